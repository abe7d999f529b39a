-- examples/bank_read_models.sql: read models of the bank account
-- (examples/bank_account.sql), kept by projections.
--
-- Load it after CREATE EXTENSION event_sourcing (the extension's schema must
-- be on search_path).  It defines two projections:
--
--   account_balances  inline: updated inside the transaction that appends,
--                     so it is never behind: balance, number of
--                     transactions, status and last activity per account;
--                     a deleted account's row goes, a redacted owner too
--   daily_totals      async: money in and out per day, applied from its
--                     checkpoint by es_projection_run or the background
--                     worker, in the same transaction as the checkpoint
--
-- Each has a reset function, so es_projection_rebuild can build it again
-- from the event store.  Handlers get every event upcast to its current
-- schema, as es_load returns it.

CREATE TABLE account_balances (
    account_id    text PRIMARY KEY,
    owner         text,
    status        text NOT NULL,
    balance       numeric NOT NULL DEFAULT 0,
    transactions  integer NOT NULL DEFAULT 0,
    last_activity timestamptz NOT NULL
);

-- One event of category "account" into the account's row.
CREATE FUNCTION account_balances_apply(event es_events) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    amount numeric := coalesce((event.data->>'amount')::numeric, 0);
BEGIN
    CASE event.event_type
    WHEN 'AccountOpened' THEN
        INSERT INTO account_balances (account_id, owner, status, balance, transactions, last_activity)
        VALUES (event.stream_id, event.data->>'owner', 'open', amount, 1, event.recorded_at);
    WHEN 'MoneyDeposited' THEN
        UPDATE account_balances
           SET balance = balance + amount, transactions = transactions + 1,
               last_activity = event.recorded_at
         WHERE account_id = event.stream_id;
    WHEN 'MoneyWithdrawn' THEN
        UPDATE account_balances
           SET balance = balance - amount, transactions = transactions + 1,
               last_activity = event.recorded_at
         WHERE account_id = event.stream_id;
    WHEN 'AccountClosed' THEN
        UPDATE account_balances
           SET status = 'closed', last_activity = event.recorded_at
         WHERE account_id = event.stream_id;
    -- the extension's system events (doc/lifecycle.md): forget too
    WHEN '$StreamDeleted' THEN
        DELETE FROM account_balances WHERE account_id = event.stream_id;
    WHEN '$EventRedacted' THEN
        UPDATE account_balances SET owner = NULL
         WHERE account_id = event.stream_id
           AND (jsonb_typeof(event.data->'paths') = 'null' OR event.data->'paths' ? 'owner');
    END CASE;
END
$$;

CREATE FUNCTION account_balances_reset() RETURNS void
LANGUAGE sql AS $$ TRUNCATE account_balances $$;

SELECT es_define_projection('account_balances', 'account_balances_apply(es_events)',
                            event_types => ARRAY['AccountOpened', 'MoneyDeposited',
                                                 'MoneyWithdrawn', 'AccountClosed',
                                                 '$StreamDeleted', '$EventRedacted'],
                            mode => 'inline',
                            reset => 'account_balances_reset()');

CREATE TABLE daily_totals (
    day          date PRIMARY KEY,
    deposited    numeric NOT NULL DEFAULT 0,
    withdrawn    numeric NOT NULL DEFAULT 0,
    events       integer NOT NULL DEFAULT 0
);

-- Money in and out per (UTC) day of recording.
CREATE FUNCTION daily_totals_apply(event es_events) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO daily_totals AS t (day, deposited, withdrawn, events)
    VALUES ((event.recorded_at AT TIME ZONE 'UTC')::date,
            CASE WHEN event.event_type IN ('AccountOpened', 'MoneyDeposited')
                 THEN (event.data->>'amount')::numeric ELSE 0 END,
            CASE WHEN event.event_type = 'MoneyWithdrawn'
                 THEN (event.data->>'amount')::numeric ELSE 0 END,
            1)
    ON CONFLICT (day) DO UPDATE
       SET deposited = t.deposited + EXCLUDED.deposited,
           withdrawn = t.withdrawn + EXCLUDED.withdrawn,
           events = t.events + 1
$$;

CREATE FUNCTION daily_totals_reset() RETURNS void
LANGUAGE sql AS $$ TRUNCATE daily_totals $$;

SELECT es_define_projection('daily_totals', 'daily_totals_apply(es_events)',
                            event_types => ARRAY['AccountOpened', 'MoneyDeposited', 'MoneyWithdrawn'],
                            mode => 'async',
                            reset => 'daily_totals_reset()');
