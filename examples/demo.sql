-- event_sourcing demo: a bank account kept as a stream of events.
-- Run it with `make demo` (a throwaway cluster), or in psql after
-- CREATE EXTENSION in a scratch database, from the repository root.

CREATE EXTENSION event_sourcing;

------------------------------------------------------------------------
-- Part 1: appending and loading events
------------------------------------------------------------------------

-- Open the account with an initial deposit. Expected version 0: the
-- stream must not exist yet.
SELECT es_append('account-42', 0, 'AccountOpened', '{"owner": "Alice", "amount": 100}');

-- Deposit and withdraw, each time passing the version we last saw.
SELECT es_append('account-42', 1, 'MoneyDeposited', '{"amount": 50}');
SELECT es_append('account-42', 2, 'MoneyWithdrawn', '{"amount": 30}', '{"teller": "bob"}');

-- Several events in one atomic batch, at consecutive versions.
SELECT es_append('account-42', 3, '[
  {"type": "MoneyDeposited", "data": {"amount": 5}},
  {"type": "MoneyDeposited", "data": {"amount": 7}, "metadata": {"channel": "atm"}}
]');

-- Someone who still believes the account is at version 3 is refused with
-- SQLSTATE 40001 (the error every driver and pool knows how to retry) ...
\set ON_ERROR_STOP off
SELECT es_append('account-42', 3, 'MoneyWithdrawn', '{"amount": 500}');
\set ON_ERROR_STOP on

-- ... so they reload the version and decide again.
SELECT es_stream_version('account-42');
SELECT es_append('account-42', 5, 'MoneyWithdrawn', '{"amount": 50}');

-- Load the stream: events in version order.
SELECT stream_version, event_type, data, metadata FROM es_load('account-42');

-- An idempotent retry: the same event id again stores nothing and returns
-- the version it was stored at.
SELECT es_append('payment-7', 0, 'PaymentRequested', '{"amount": 20}', '{}', '0195f0c2-1111-7000-8000-000000000001');
SELECT es_append('payment-7', 0, 'PaymentRequested', '{"amount": 20}', '{}', '0195f0c2-1111-7000-8000-000000000001');

-- The whole log in global order, and one category ("account" = stream ids
-- starting with "account-"), paged by the last position seen.
SELECT global_position, stream_id, stream_version, event_type FROM es_read_all(0, 100);
SELECT global_position, stream_id, event_type FROM es_read_category('account', 3, 2);

-- Stored events never change.
\set ON_ERROR_STOP off
UPDATE es_events SET data = '{"amount": 1000000}' WHERE event_type = 'MoneyDeposited';
\set ON_ERROR_STOP on

------------------------------------------------------------------------
-- Part 2: the account as an aggregate (examples/bank_account.sql)
------------------------------------------------------------------------

-- evolve(state, event) folds events into a state; decide(state, command)
-- turns a command into events or refuses it.
\set ECHO none
\i examples/bank_account.sql
\set ECHO all
SELECT category, evolve, decide, initial_state, snapshot_every FROM es_aggregates;

-- The state now, folded in C from the stream above.
SELECT * FROM es_aggregate('account-42');

-- Commands: es_execute folds, decides and appends in one call.
SELECT es_execute('account-42', '{"type": "Deposit", "amount": 25}');
SELECT es_execute('account-7', '{"type": "Open", "owner": "Bob", "amount": 10}');

-- A refused command stores nothing.
\set ON_ERROR_STOP off
SELECT es_execute('account-7', '{"type": "Withdraw", "amount": 500}');
SELECT es_execute('account-7', '{"type": "Close"}');
\set ON_ERROR_STOP on
SELECT * FROM es_aggregate('account-7');

-- The state as of an earlier version, and as of an earlier time.
SELECT * FROM es_aggregate('account-42', 3);
SELECT clock_timestamp() AS before_payday \gset
SELECT pg_sleep(0.01);
SELECT es_execute('account-42', '{"type": "Deposit", "amount": 1000}');
SELECT * FROM es_aggregate_at('account-42', :'before_payday');
SELECT * FROM es_aggregate('account-42');

-- A concurrent modification: a clerk who loaded the account at version 7
-- appends a withdrawal after the payday deposit has landed (version 8).
-- The append is refused with 40001; the clerk retries through es_execute,
-- which folds the latest state, decides again and appends.
\set ON_ERROR_STOP off
SELECT es_append('account-42', 7, 'MoneyWithdrawn', '{"amount": 100}');
\set ON_ERROR_STOP on
SELECT es_execute('account-42', '{"type": "Withdraw", "amount": 100}');
SELECT * FROM es_aggregate('account-42');

-- Empty the account and close it.
SELECT es_execute('account-7', '{"type": "Withdraw", "amount": 10}');
SELECT es_execute('account-7', '{"type": "Close"}');
SELECT stream_version, event_type, data FROM es_load('account-7');
SELECT * FROM es_aggregate('account-7');

------------------------------------------------------------------------
-- Part 3: read models kept by projections (examples/bank_read_models.sql)
------------------------------------------------------------------------

-- account_balances is an inline projection: a trigger on the store calls
-- its handler inside every appending transaction. daily_totals is async:
-- it follows the global log from a checkpoint.
\set ECHO none
\i examples/bank_read_models.sql
\set ECHO all
SELECT name, mode, event_types, position, lag, status FROM es_projections ORDER BY name;

-- An inline projection applies to events appended after it was defined;
-- a rebuild applies the history (and returns how many events it applied).
SELECT * FROM account_balances;
SELECT es_projection_rebuild('account_balances');
SELECT account_id, owner, status, balance, transactions FROM account_balances ORDER BY account_id;

-- From now on the read model moves in the same transaction as the events:
-- a command that succeeds updates it, one that is refused leaves it alone.
SELECT es_execute('account-42', '{"type": "Deposit", "amount": 60}');
\set ON_ERROR_STOP off
SELECT es_execute('account-42', '{"type": "Withdraw", "amount": 100000}');
\set ON_ERROR_STOP on
SELECT account_id, balance, transactions FROM account_balances WHERE account_id = 'account-42';

-- The async projection is behind until it runs. With the library in
-- shared_preload_libraries and event_sourcing.worker_databases naming this
-- database, a background worker runs it within milliseconds of each commit;
-- here we run it by hand (pg_cron could, too).
SELECT name, position, lag, status FROM es_projections WHERE name = 'daily_totals';
SELECT es_projection_run('daily_totals');
SELECT deposited, withdrawn, events FROM daily_totals;
SELECT name, position, lag, status FROM es_projections WHERE name = 'daily_totals';

-- A rebuild replays the store from the start and reproduces the same tables.
CREATE TEMP TABLE balances_before AS SELECT * FROM account_balances;
CREATE TEMP TABLE totals_before AS SELECT * FROM daily_totals;
SELECT es_projection_rebuild('account_balances'), es_projection_rebuild('daily_totals');
SELECT (SELECT count(*) FROM ((TABLE account_balances EXCEPT TABLE balances_before)
                   UNION ALL (TABLE balances_before EXCEPT TABLE account_balances)) d) AS balance_rows_that_differ,
       (SELECT count(*) FROM ((TABLE daily_totals EXCEPT TABLE totals_before)
                   UNION ALL (TABLE totals_before EXCEPT TABLE daily_totals)) d) AS total_rows_that_differ;

------------------------------------------------------------------------
-- Part 4: an event type that changed shape twice (examples/upcasting.sql)
------------------------------------------------------------------------
\i examples/upcasting.sql

------------------------------------------------------------------------
-- Part 5: forgetting a customer (doc/lifecycle.md)
------------------------------------------------------------------------
-- Bob asks to be forgotten. Deleting his account's stream removes its
-- events and snapshots and leaves a tombstone, which the inline read model
-- receives in the same transaction: his row goes too.
SELECT es_delete_stream('account-7', reason => 'erasure request #1017');
SELECT stream_version, event_type, data FROM es_load('account-7');
SELECT account_id, owner, balance FROM account_balances ORDER BY account_id;

-- Nothing more goes into a deleted stream, and it folds no more.
\set ON_ERROR_STOP off
SELECT es_append('account-7', NULL, 'MoneyDeposited', '{"amount": 1}');
SELECT * FROM es_aggregate('account-7');
\set ON_ERROR_STOP on

-- Alice keeps her account but has her name erased from its history: the
-- stored event is rewritten, $EventRedacted tells the read model.
SELECT es_redact_event(event_id, ARRAY['owner'], 'erasure request #1018')
  FROM es_load('account-42') WHERE event_type = 'AccountOpened';
SELECT stream_version, event_type, data FROM es_load('account-42', 1, 1);
SELECT account_id, owner, balance FROM account_balances ORDER BY account_id;

-- Every removal is on record, without the removed data.
SELECT operation, stream_id, from_version, to_version, event_count, paths, reason
  FROM es_erasures ORDER BY erasure_id;
