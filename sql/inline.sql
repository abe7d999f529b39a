--
-- inline: SQL callbacks whose body is one expression are evaluated as that
-- expression (src/inline.c), with the results, NULL handling and errors of
-- the function manager's call.  Each compilation reports itself at DEBUG1:
-- "evaluated as an expression", or why the function is called through the
-- function manager; the setting event_sourcing.inline_sql_callbacks = off
-- gives the regular call to compare with.
--
-- (security, before it, drops the extension: create it again)
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS event_sourcing;
RESET client_min_messages;
CREATE SCHEMA inl;
SET search_path = inl, public;

-- a stream of five events, one of them with a non-numeric amount
SELECT es_append('acc-1', 0, '[{"type": "Opened", "data": {"amount": 5}},
                               {"type": "Deposited", "data": {"amount": 3}},
                               {"type": "Odd", "data": {"amount": null}},
                               {"type": "Deposited", "data": {"amount": 7}},
                               {"type": "Bad", "data": {"amount": "x"}}]'::jsonb);

-- raise_code(code): raises SQLSTATE code (an error from inside an expression)
CREATE FUNCTION inl.raise_code(code text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RAISE EXCEPTION 'refused: %', code USING ERRCODE = code;
END
$$;

-- fold(upto, inline): es_aggregate('acc-1', upto) with inlining on or off,
-- as "version state" or "SQLSTATE: message (context)"
CREATE FUNCTION inl.fold(upto bigint, inline boolean) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    r record; st text; msg text; ctx text;
BEGIN
    PERFORM set_config('event_sourcing.inline_sql_callbacks', inline::text, true);
    SELECT * INTO r FROM es_aggregate('acc-1', upto);
    RETURN r.version || ' ' || coalesce(r.state::text, 'NULL');
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, ctx = PG_EXCEPTION_CONTEXT;
    -- the context's first line names the SQL function, as fmgr_sql does
    RETURN st || ': ' || msg || ' (' || split_part(ctx, E'\n', 1) || ')';
END
$$;

-- compare(attrs, body): evolve is CREATE FUNCTION ... <attrs> AS 'SELECT <body>';
-- the fold of the first 4 and of all 5 events, inlined and regular
CREATE FUNCTION inl.compare(attrs text, body text)
RETURNS TABLE(upto bigint, inlined text, same boolean)
LANGUAGE plpgsql AS $$
DECLARE a text; b text; n int;
BEGIN
    EXECUTE format('CREATE OR REPLACE FUNCTION inl.ev(state jsonb, event es_events) RETURNS jsonb '
                   'LANGUAGE sql %s AS %L', attrs, 'SELECT ' || body);
    FOR n IN 4..5 LOOP
        upto := n;
        a := inl.fold(n, true);
        b := inl.fold(n, false);
        inlined := a;
        same := a IS NOT DISTINCT FROM b;
        IF NOT same THEN
            inlined := a || ' <> regular: ' || b;
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;

CREATE FUNCTION inl.ev(state jsonb, event es_events) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$ SELECT state $$;
SELECT es_define_aggregate('acc', 'inl.ev(jsonb, es_events)', '{"n": 0}', snapshot_every => 0);

SET client_min_messages = debug1;

-- expressions: counting, CASE over the event type, numbers, text, arrays
SELECT * FROM inl.compare('IMMUTABLE',
    $$state || jsonb_build_object('n', (state->>'n')::int + 1)$$);
SELECT * FROM inl.compare('IMMUTABLE', $$CASE event.event_type
        WHEN 'Opened' THEN jsonb_build_object('balance', (event.data->>'amount')::numeric, 'n', 1)
        WHEN 'Deposited' THEN state || jsonb_build_object(
            'balance', (state->>'balance')::numeric + (event.data->>'amount')::numeric,
            'n', (state->>'n')::int + 1)
        ELSE state END$$);
SELECT * FROM inl.compare('STABLE',
    $$jsonb_set(state, '{types}', coalesce(state->'types', '[]') || to_jsonb(upper(event.event_type)))$$);
SELECT * FROM inl.compare('IMMUTABLE',
    $$jsonb_build_object('last', event.stream_version, 'id_len', length(event.event_id::text),
                         'sum', (state->>'n')::int + event.stream_version * 2, 'pi', round(pi()::numeric, 3))$$);
-- constants folded when compiled, as when planned
SELECT * FROM inl.compare('IMMUTABLE', $$state || jsonb_build_object('k', 2 + 3 * 4, 'day', '2024-01-31'::date + 1)$$);

-- NULL: evolve returns NULL at "Odd"; STRICT keeps the state NULL, a
-- non-STRICT one sees the NULL and starts again
SELECT * FROM inl.compare('IMMUTABLE STRICT',
    $$CASE WHEN event.event_type = 'Odd' THEN NULL ELSE state || jsonb_build_object('v', event.stream_version) END$$);
SELECT * FROM inl.compare('IMMUTABLE',
    $$CASE WHEN event.event_type = 'Odd' THEN NULL ELSE coalesce(state, '{"restarted": true}') || jsonb_build_object('v', event.stream_version) END$$);
-- a NULL argument in the middle of an expression
SELECT * FROM inl.compare('IMMUTABLE',
    $$state || jsonb_build_object('amount', event.data->'amount', 'isnull', (event.data->>'amount') IS NULL)$$);

-- errors raised inside the expression: same SQLSTATE, message and context
SELECT * FROM inl.compare('IMMUTABLE',
    $$state || jsonb_build_object('a', (event.data->>'amount')::int)$$);
SELECT * FROM inl.compare('IMMUTABLE',
    $$state || jsonb_build_object('q', 10 / (event.stream_version - 3))$$);
SELECT * FROM inl.compare('IMMUTABLE',
    $$CASE WHEN event.event_type = 'Bad' THEN inl.raise_code('BA042') ELSE state END$$);
-- (raise_code is IMMUTABLE with a constant argument: folded, and so raised,
-- when compiled, as fmgr_sql's planning folds it; a VOLATILE one runs per call)
ALTER FUNCTION inl.raise_code(text) VOLATILE;
SELECT * FROM inl.compare('IMMUTABLE',
    $$CASE WHEN event.event_type = 'Bad' THEN inl.raise_code('BA042') ELSE state END$$);

-- a SQL-standard body (RETURN expression) is inlined too
CREATE OR REPLACE FUNCTION inl.ev(state jsonb, event es_events) RETURNS jsonb
LANGUAGE sql IMMUTABLE RETURN state || jsonb_build_object('std', event.stream_version);
SELECT inl.fold(4, true) AS inlined, inl.fold(4, false) AS regular;

-- CREATE OR REPLACE between folds: the next fold uses the new body
CREATE OR REPLACE FUNCTION inl.ev(state jsonb, event es_events) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$ SELECT state || '{"body": 1}' $$;
SELECT inl.fold(2, true);
SELECT inl.fold(2, true);
CREATE OR REPLACE FUNCTION inl.ev(state jsonb, event es_events) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$ SELECT state || '{"body": 2}' $$;
SELECT inl.fold(2, true);
-- ... and so does replacing a SQL function that the body calls (inlined into it)
CREATE FUNCTION inl.step(s jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$ SELECT s || '{"step": 1}' $$;
CREATE OR REPLACE FUNCTION inl.ev(state jsonb, event es_events) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$ SELECT inl.step(state) $$;
SELECT inl.fold(2, true);
CREATE OR REPLACE FUNCTION inl.step(s jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$ SELECT s || '{"step": 2}' $$;
SELECT inl.fold(2, true);

-- names in the body resolve with the definition's search_path, not the caller's
CREATE SCHEMA inl_a;
CREATE SCHEMA inl_b;
CREATE FUNCTION inl_a.mark(s jsonb) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN RETURN s || '{"from": "a"}'; END $$;
CREATE FUNCTION inl_b.mark(s jsonb) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN RETURN s || '{"from": "b"}'; END $$;
SET search_path = inl_a, public;
CREATE FUNCTION inl.ev_path(state jsonb, event es_events) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$ SELECT mark(state) $$;
SELECT es_define_aggregate('pth', 'inl.ev_path(jsonb, es_events)', '{}', snapshot_every => 0);
SELECT es_append('pth-1', 0, 'E', '{}');
SET search_path = inl_b, inl, public;
SELECT state FROM es_aggregate('pth-1');
SET event_sourcing.inline_sql_callbacks = off;
SELECT state FROM es_aggregate('pth-1');
RESET event_sourcing.inline_sql_callbacks;
SET search_path = inl, public;

-- called through the function manager: SET clauses, SECURITY DEFINER,
-- VOLATILE, other languages, bodies that are not one expression
SELECT * FROM inl.compare('IMMUTABLE SET search_path = inl_b, public',
    $$mark(state) || jsonb_build_object('n', event.stream_version)$$);
SELECT * FROM inl.compare('IMMUTABLE SECURITY DEFINER', $$state || '{"sd": true}'$$);
SELECT * FROM inl.compare('VOLATILE', $$state || '{"vol": true}'$$);
SELECT * FROM inl.compare('IMMUTABLE', $$x FROM (SELECT state || '{"from": true}' AS x) s$$);
SELECT * FROM inl.compare('IMMUTABLE', $$state WHERE event.stream_version < 3$$);
SELECT * FROM inl.compare('IMMUTABLE', $$(SELECT state || '{"sublink": true}')$$);
CREATE OR REPLACE FUNCTION inl.ev(state jsonb, event es_events) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN RETURN state || '{"plpgsql": true}'; END $$;
SELECT inl.fold(2, true) AS inlined, inl.fold(2, false) AS regular;


--
-- Upcasters go through the same path (upcast.c keeps one EsCallback per
-- registered step): a chain of two SQL steps, U 1 -> 2 (inl.up, replaced by
-- each case below) and 2 -> 3 (inl.up2), over two streams of events stored
-- at schema 1, read with es_load inlined and regular.
--
SET client_min_messages = warning;
SELECT es_append('up-1', 0, '[{"type": "U", "data": {"amount": 5}},
                              {"type": "U", "data": {"amount": 7.5, "note": "b"}},
                              {"type": "U", "data": {"n": 1}}]'::jsonb);
SELECT es_append('up-2', 0, '[{"type": "U", "data": {"amount": 5}},
                              {"type": "U", "data": {"amount": null}},
                              {"type": "U", "data": {"amount": "x"}}]'::jsonb);
SELECT es_append('up-3', 0, 'U', '{"leaf": true}');
CREATE FUNCTION inl.up(data jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$ SELECT data $$;
CREATE FUNCTION inl.up2(data jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$ SELECT data || '{"s2": true}' $$;
SELECT es_define_upcaster('U', 1, 'inl.up(jsonb)');
SELECT es_define_upcaster('U', 2, 'inl.up2(jsonb)');

-- uload(stream, inline): es_load(stream) with inlining on or off, as
-- "type/schema data; ..." or "SQLSTATE: message (context)"
CREATE FUNCTION inl.uload(s text, inline boolean) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    r text; st text; msg text; ctx text;
BEGIN
    PERFORM set_config('event_sourcing.inline_sql_callbacks', inline::text, true);
    SELECT string_agg(event_type || '/' || schema_version || ' ' || data::text, '; ' ORDER BY stream_version)
      INTO r FROM es_load(s);
    RETURN r;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, ctx = PG_EXCEPTION_CONTEXT;
    RETURN st || ': ' || msg || ' (' || split_part(ctx, E'\n', 1) || ')';
END
$$;

-- compare_up(attrs, body): inl.up is CREATE FUNCTION ... <attrs> AS
-- 'SELECT <body>'; both streams read inlined and regular
CREATE FUNCTION inl.compare_up(attrs text, body text)
RETURNS TABLE(stream text, inlined text, same boolean)
LANGUAGE plpgsql AS $$
DECLARE a text; b text;
BEGIN
    EXECUTE format('CREATE OR REPLACE FUNCTION inl.up(data jsonb) RETURNS jsonb '
                   'LANGUAGE sql %s AS %L', attrs, 'SELECT ' || body);
    FOREACH stream IN ARRAY ARRAY['up-1', 'up-2'] LOOP
        a := inl.uload(stream, true);
        b := inl.uload(stream, false);
        inlined := a;
        same := a IS NOT DISTINCT FROM b;
        IF NOT same THEN
            inlined := a || ' <> regular: ' || b;
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;

SET client_min_messages = debug1;

-- expressions
SELECT * FROM inl.compare_up('IMMUTABLE', $$data || '{"currency": "EUR"}'$$);
SELECT * FROM inl.compare_up('IMMUTABLE',
    $$jsonb_build_object('value', data->'amount', 'type', jsonb_typeof(data->'amount'), 'note', data ? 'note')$$);
SELECT * FROM inl.compare_up('STABLE', $$CASE WHEN data ? 'amount' AND jsonb_typeof(data->'amount') = 'number'
        THEN (data - 'amount') || jsonb_build_object('cents', (data->>'amount')::numeric * 100)
        ELSE data || jsonb_build_object('kind', upper(coalesce(jsonb_typeof(data->'amount'), 'none'))) END$$);
-- a STRICT upcaster (stored data is never NULL, nor is a step's input:
-- strictness cannot skip a call here; the function is inlined all the same)
SELECT * FROM inl.compare_up('IMMUTABLE STRICT', $$data || jsonb_build_object('strict', data ? 'amount')$$);

-- NULL and non-object results, at step 1: 22004 and 22023 naming the upcaster
SELECT * FROM inl.compare_up('IMMUTABLE', $$CASE WHEN data->'amount' = 'null' THEN NULL ELSE data END$$);
SELECT * FROM inl.compare_up('IMMUTABLE', $$CASE WHEN data ? 'n' THEN data->'n' ELSE data END$$);
SELECT * FROM inl.compare_up('IMMUTABLE STRICT', $$CASE WHEN data ? 'n' THEN NULL ELSE data END$$);

-- errors inside the expression: same SQLSTATE, message and context
SELECT * FROM inl.compare_up('IMMUTABLE', $$data || jsonb_build_object('a', (data->>'amount')::numeric)$$);
SELECT * FROM inl.compare_up('IMMUTABLE', $$data || jsonb_build_object('q', 10 / ((data->>'amount')::numeric - 7.5))$$);
SELECT * FROM inl.compare_up('IMMUTABLE',
    $$CASE WHEN data->>'amount' = 'x' THEN inl.raise_code('BA043') ELSE data END$$);

-- a read inside an upcaster that upcasts with the same step (its ExprState is
-- in use: the nested call goes through the function manager)
CREATE FUNCTION inl.peek() RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$ BEGIN RETURN (SELECT data FROM es_load('up-3')); END $$;
SELECT * FROM inl.compare_up('IMMUTABLE',
    $$jsonb_build_object('d', data, 'nested', CASE WHEN data ? 'leaf' THEN 'null' ELSE inl.peek() END)$$);

-- called through the function manager: SET clauses, SECURITY DEFINER,
-- VOLATILE, bodies that are not one expression, other languages
SELECT * FROM inl.compare_up('IMMUTABLE SET search_path = inl_b, public', $$mark(data)$$);
SELECT * FROM inl.compare_up('IMMUTABLE SECURITY DEFINER', $$data || '{"sd": true}'$$);
SELECT * FROM inl.compare_up('VOLATILE', $$data || '{"vol": true}'$$);
SELECT * FROM inl.compare_up('IMMUTABLE', $$x FROM (SELECT data || '{"from": true}' AS x) s$$);
CREATE OR REPLACE FUNCTION inl.up(data jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN RETURN data || '{"plpgsql": true}'; END $$;
SELECT inl.uload('up-1', true) AS inlined, inl.uload('up-1', false) AS regular;

-- upcasters run as the step's owner with its search_path, inlined too:
-- names in the body resolve with the search_path of es_define_upcaster
SET client_min_messages = warning;
SELECT es_append('v-1', 0, 'V', '{}');
SET client_min_messages = debug1;
SET search_path = inl_a, public;
CREATE FUNCTION inl.up_v1(data jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$ SELECT mark(data) || jsonb_build_object('owner', current_user = session_user) $$;
SELECT es_define_upcaster('V', 1, 'inl.up_v1(jsonb)');
SET search_path = inl_b, inl, public;
SELECT inl.uload('v-1', true) AS inlined, inl.uload('v-1', false) AS regular;
SET search_path = inl, public;

RESET client_min_messages;
