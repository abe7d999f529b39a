-- examples/bank_account.sql: a bank account as an aggregate defined in SQL.
--
-- Load it after CREATE EXTENSION event_sourcing (the extension's schema must
-- be on search_path).  It defines:
--
--   bank_evolve(state, event)   folds one event into the account's state
--   bank_decide(state, command) turns a command into new events, or refuses it
--
-- and registers them for the category "account" (streams "account-<id>").
--
-- Events:   AccountOpened {owner, amount}, MoneyDeposited {amount},
--           MoneyWithdrawn {amount}, AccountClosed {}
-- Commands: {"type": "Open", "owner": ..., "amount": n}, {"type": "Deposit", "amount": n},
--           {"type": "Withdraw", "amount": n}, {"type": "Close"}
-- State:    {"status": "new" | "open" | "closed", "owner", "balance", "transactions"}
--
-- Refusals are errors with their own SQLSTATEs (class BA, "bank account"),
-- so an application can tell them apart:
--
--   BA001  the account is already open
--   BA002  the account is not open
--   BA003  the amount must be positive
--   BA004  insufficient funds
--   BA005  cannot close an account with a positive balance
--   22023  unknown command

CREATE FUNCTION bank_evolve(state jsonb, event es_events) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE event.event_type
        WHEN 'AccountOpened' THEN
            jsonb_build_object('status', 'open',
                               'owner', event.data->'owner',
                               'balance', (event.data->>'amount')::numeric,
                               'transactions', 1)
        WHEN 'MoneyDeposited' THEN
            state || jsonb_build_object(
                'balance', (state->>'balance')::numeric + (event.data->>'amount')::numeric,
                'transactions', (state->>'transactions')::int + 1)
        WHEN 'MoneyWithdrawn' THEN
            state || jsonb_build_object(
                'balance', (state->>'balance')::numeric - (event.data->>'amount')::numeric,
                'transactions', (state->>'transactions')::int + 1)
        WHEN 'AccountClosed' THEN
            state || '{"status": "closed"}'
        ELSE state
    END
$$;

CREATE FUNCTION bank_decide(state jsonb, command jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    status  text := state->>'status';
    amount  numeric := (command->>'amount')::numeric;
    balance numeric := coalesce((state->>'balance')::numeric, 0);
BEGIN
    IF command->>'type' IN ('Open', 'Deposit', 'Withdraw') AND (amount IS NULL OR amount <= 0) THEN
        RAISE EXCEPTION 'amount must be positive'
            USING ERRCODE = 'BA003', DETAIL = format('The amount given was %s.', coalesce(amount::text, 'missing'));
    END IF;

    CASE command->>'type'
    WHEN 'Open' THEN
        IF status <> 'new' THEN
            RAISE EXCEPTION 'account is already open' USING ERRCODE = 'BA001';
        END IF;
        RETURN jsonb_build_array(jsonb_build_object('type', 'AccountOpened',
            'data', jsonb_build_object('owner', command->'owner', 'amount', amount)));
    WHEN 'Deposit' THEN
        IF status <> 'open' THEN
            RAISE EXCEPTION 'account is not open' USING ERRCODE = 'BA002';
        END IF;
        RETURN jsonb_build_array(jsonb_build_object('type', 'MoneyDeposited',
            'data', jsonb_build_object('amount', amount)));
    WHEN 'Withdraw' THEN
        IF status <> 'open' THEN
            RAISE EXCEPTION 'account is not open' USING ERRCODE = 'BA002';
        END IF;
        IF amount > balance THEN
            RAISE EXCEPTION 'insufficient funds' USING ERRCODE = 'BA004',
                DETAIL = format('The balance is %s; the withdrawal was %s.', balance, amount);
        END IF;
        RETURN jsonb_build_array(jsonb_build_object('type', 'MoneyWithdrawn',
            'data', jsonb_build_object('amount', amount)));
    WHEN 'Close' THEN
        IF status <> 'open' THEN
            RAISE EXCEPTION 'account is not open' USING ERRCODE = 'BA002';
        END IF;
        IF balance > 0 THEN
            RAISE EXCEPTION 'cannot close an account with a positive balance' USING ERRCODE = 'BA005',
                DETAIL = format('The balance is %s.', balance),
                HINT = 'Withdraw the balance first.';
        END IF;
        RETURN '[{"type": "AccountClosed", "data": {}}]';
    ELSE
        RAISE EXCEPTION 'unknown command %', coalesce(command->>'type', 'without a type')
            USING ERRCODE = 'invalid_parameter_value';
    END CASE;
END
$$;

SELECT es_define_aggregate('account', 'bank_evolve(jsonb, es_events)',
                           initial_state => '{"status": "new", "balance": 0, "transactions": 0}',
                           decide => 'bank_decide(jsonb, jsonb)',
                           snapshot_every => 100);
