-- test/fuzz/fixtures.sql: what every fuzz case's database starts with (the
-- template database of test/fuzz/EsFuzz.pm), besides the extension itself.
-- A reproduction printed by the fuzz suite runs in a database made by:
--   CREATE EXTENSION event_sourcing;  \i test/fuzz/fixtures.sql

-- The read model every projection handler of the suite writes (k: the case).
CREATE TABLE fz_rm (k text NOT NULL, v jsonb);

-- Raise an error of the given SQLSTATE; the message says it was raised on
-- purpose, so that the checker can tell a callback's own error from one of
-- the extension.
CREATE FUNCTION fz_raise(code text) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'fuzz-raised %', code USING ERRCODE = code;
END $$;

-- A procedure that commits (called from a callback: 2D000 expected).
CREATE PROCEDURE fz_commit_proc() LANGUAGE plpgsql AS $$ BEGIN COMMIT; END $$;

-- Well-behaved callbacks of every kind.
CREATE FUNCTION fz_evolve_ok(state jsonb, e es_events) RETURNS jsonb LANGUAGE sql AS
  $$ SELECT coalesce(state, '{}') || jsonb_build_object('n', coalesce((state->>'n')::int, 0) + 1) $$;
CREATE FUNCTION fz_decide_ok(state jsonb, command jsonb) RETURNS jsonb LANGUAGE sql AS
  $$ SELECT '[{"type": "FzDecided", "data": {"ok": true}}]'::jsonb $$;
CREATE FUNCTION fz_up_ok(data jsonb) RETURNS jsonb LANGUAGE sql AS
  $$ SELECT data || '{"up": 1}' $$;
CREATE FUNCTION fz_h_ok(e es_events) RETURNS void LANGUAGE sql AS
  $$ INSERT INTO fz_rm VALUES ('ok', to_jsonb(e.data)) $$;
CREATE FUNCTION fz_reset_ok() RETURNS void LANGUAGE sql AS
  $$ DELETE FROM fz_rm WHERE k = 'ok' $$;

-- Callbacks with a wrong signature (or of the wrong kind of routine).
CREATE FUNCTION fz_w_one(state jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT state $$;
CREATE FUNCTION fz_w_json(state json, e es_events) RETURNS json LANGUAGE sql AS $$ SELECT state $$;
CREATE FUNCTION fz_w_text(state jsonb, e es_events) RETURNS text LANGUAGE sql AS $$ SELECT 'x' $$;
CREATE FUNCTION fz_w_setof(state jsonb, e es_events) RETURNS SETOF jsonb LANGUAGE sql AS $$ SELECT state $$;
CREATE FUNCTION fz_w_poly(state anyelement, e es_events) RETURNS anyelement LANGUAGE sql AS $$ SELECT state $$;
CREATE FUNCTION fz_w_variadic(VARIADIC a jsonb[]) RETURNS jsonb LANGUAGE sql AS $$ SELECT a[1] $$;
CREATE FUNCTION fz_w_record(e record) RETURNS void LANGUAGE plpgsql AS $$ BEGIN END $$;
CREATE FUNCTION fz_w_hint(e es_events) RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;
CREATE FUNCTION fz_w_reset(x int) RETURNS void LANGUAGE sql AS $$ SELECT 1 $$;
CREATE FUNCTION fz_w_out(state jsonb, e es_events, OUT r jsonb) LANGUAGE sql AS $$ SELECT state $$;
CREATE FUNCTION fz_w_trig() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
CREATE PROCEDURE fz_w_proc(state jsonb, e es_events) LANGUAGE sql AS $$ SELECT 1 $$;
CREATE AGGREGATE fz_w_agg(jsonb) (SFUNC = jsonb_concat, STYPE = jsonb);

-- A category with a well-behaved aggregate, for callbacks that recurse into
-- another stream.
SELECT es_define_aggregate('fzok', 'fz_evolve_ok(jsonb, es_events)');
SELECT es_append('fzok-1', NULL, '[{"type": "FzOk", "data": {}}, {"type": "FzOk", "data": {}}]');

-- A role without privileges, for callbacks that try to switch to it.
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'fz_nobody') THEN
    CREATE ROLE fz_nobody;
  END IF;
END $$;
