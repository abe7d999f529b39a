-- event_sourcing demo: a bank account kept as a stream of events.
-- Run it with `make demo` (a throwaway cluster), or in psql after
-- CREATE EXTENSION in a scratch database.

CREATE EXTENSION event_sourcing;

-- Open the account. Expected version 0: the stream must not exist yet.
SELECT es_append('account-42', 0, 'AccountOpened', '{"owner": "Alice", "currency": "EUR"}');

-- Deposit and withdraw, each time passing the version we last saw.
SELECT es_append('account-42', 1, 'MoneyDeposited', '{"amount": 100}');
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

-- The current balance, folded in plain SQL.
SELECT sum(CASE event_type
             WHEN 'MoneyDeposited' THEN (data->>'amount')::numeric
             WHEN 'MoneyWithdrawn' THEN -(data->>'amount')::numeric
             ELSE 0 END) AS balance
  FROM es_load('account-42');

-- The account as it was at version 3, and the version an hour ago.
SELECT stream_version, event_type, data FROM es_load('account-42', 1, 3);
SELECT es_stream_version('account-42', now() - interval '1 hour') AS version_an_hour_ago;

-- An idempotent retry: the same event id again stores nothing and returns
-- the version it was stored at.
SELECT es_append('account-7', 0, 'AccountOpened', '{"owner": "Bob"}', '{}', '0195f0c2-1111-7000-8000-000000000001');
SELECT es_append('account-7', 0, 'AccountOpened', '{"owner": "Bob"}', '{}', '0195f0c2-1111-7000-8000-000000000001');

-- The whole log in global order, and one category ("account" = stream ids
-- starting with "account-"), paged by the last position seen.
SELECT global_position, stream_id, stream_version, event_type FROM es_read_all(0, 100);
SELECT global_position, stream_id, event_type FROM es_read_category('account', 3, 2);

-- Stored events never change.
\set ON_ERROR_STOP off
UPDATE es_events SET data = '{"amount": 1000000}' WHERE event_type = 'MoneyDeposited';
\set ON_ERROR_STOP on
