-- examples/upcasting.sql: an event type that changed shape twice, read and
-- folded in its newest shape only.
--
-- Run it after CREATE EXTENSION event_sourcing (the extension's schema must
-- be on search_path), from the repository root:
--
--   psql -v ON_ERROR_STOP=1 -f examples/upcasting.sql
--
-- The story: a wallet's deposits were first stored as
--
--   MoneyDeposited {amount}                 MoneyDeposited schema 1
--
-- then gained a currency (old deposits were all in euros)
--
--   MoneyDeposited {amount, currency}       MoneyDeposited schema 2
--
-- and were finally renamed, "amount" becoming "value"
--
--   FundsDeposited {value, currency}        FundsDeposited schema 1
--
-- Stored events never change.  Instead, each change of shape registers an
-- upcaster, a function from the old shape to the next one:
--
--   deposited_v1_to_v2(data)     MoneyDeposited 1 -> 2: adds "currency": "EUR"
--   deposited_v2_to_funds(data)  MoneyDeposited 2 -> FundsDeposited 1 (a rename)
--
-- and every read path (es_load, es_read_all, es_read_category, the fold of
-- es_aggregate and es_execute) returns events in the newest shape, so
--
--   wallet_evolve(state, event)  the wallet's fold
--
-- is written for FundsDeposited {value, currency} alone.  Each stored event
-- records the schema it was written in (es_events.schema_version): 1 plus
-- the number of upcasters its type had at the time.
--
-- The streams are in the category "wallet" ("wallet-1").  Upcasters belong
-- to an event type in every category, though, and the bank account of
-- examples/demo.sql stores MoneyDeposited events too, which bank_evolve
-- folds in their original shape: so the example runs in one transaction and
-- rolls it back at the end, leaving the database as it found it (it can run
-- after examples/demo.sql, and again).  Replace ROLLBACK by COMMIT to keep it.

BEGIN;

-- The upcasters: plain SQL functions from jsonb to jsonb.
CREATE FUNCTION deposited_v1_to_v2(data jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT data || '{"currency": "EUR"}'
$$;

CREATE FUNCTION deposited_v2_to_funds(data jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT jsonb_build_object('value', data->'amount', 'currency', data->'currency')
$$;

-- Year one: deposits without a currency (MoneyDeposited schema 1).
SELECT es_append('wallet-1', 0, '[
  {"type": "WalletOpened",   "data": {"owner": "Alice"}},
  {"type": "MoneyDeposited", "data": {"amount": 100}}
]');

-- Deposits gain a currency.  From now on MoneyDeposited is written in
-- schema 2; the events already stored stay in schema 1.
SELECT es_define_upcaster('MoneyDeposited', 1, 'deposited_v1_to_v2(jsonb)');
SELECT es_append('wallet-1', 2, 'MoneyDeposited', '{"amount": 25, "currency": "USD"}');

-- MoneyDeposited becomes FundsDeposited.  A renaming step ends the old
-- type's chain: old events continue as FundsDeposited at schema 1, so
-- FundsDeposited's own upcasters, if it ever gets any, apply to them too.
SELECT es_define_upcaster('MoneyDeposited', 2, 'deposited_v2_to_funds(jsonb)', 'FundsDeposited');
SELECT es_append('wallet-1', 3, 'FundsDeposited', '{"value": 40, "currency": "EUR"}');

SELECT event_type, from_schema, upcast, to_type
  FROM es_upcasters ORDER BY event_type, from_schema;

-- The stored rows: one event in each shape, as written.
SELECT stream_version, event_type, data, schema_version
  FROM es_events WHERE stream_id = 'wallet-1' ORDER BY stream_version;

-- Read back, every deposit is a FundsDeposited {value, currency}.
SELECT stream_version, event_type, data, schema_version FROM es_load('wallet-1');
SELECT stream_id, stream_version, event_type, data, schema_version
  FROM es_read_category('wallet');

-- The wallet as an aggregate.  wallet_evolve knows only the newest shape:
-- balances per currency, from FundsDeposited {value, currency}.
CREATE FUNCTION wallet_evolve(state jsonb, event es_events) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE event.event_type
        WHEN 'WalletOpened' THEN
            state || jsonb_build_object('owner', event.data->'owner')
        WHEN 'FundsDeposited' THEN
            jsonb_set(state, ARRAY['balances', event.data->>'currency'],
                      to_jsonb(coalesce((state #>> ARRAY['balances', event.data->>'currency'])::numeric, 0)
                               + (event.data->>'value')::numeric))
        ELSE state
    END
$$;

SELECT es_define_aggregate('wallet', 'wallet_evolve(jsonb, es_events)',
                           initial_state => '{"balances": {}}');

-- Folded from events in three shapes: 100 (schema 1, so EUR) + 40 EUR, 25 USD.
SELECT * FROM es_aggregate('wallet-1');

-- New deposits are written in the newest shape and fold the same way.
SELECT es_append('wallet-1', 4, 'FundsDeposited', '{"value": 10, "currency": "USD"}');
SELECT * FROM es_aggregate('wallet-1');

-- Leave the database as it was (see the top of the file).
ROLLBACK;
