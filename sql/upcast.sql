--
-- upcast: es_define_upcaster, the upcasting of every read path (es_load,
-- es_read_all, es_read_category, the fold of es_aggregate and es_execute),
-- the schema_version recorded at append, and the audit metadata settings
-- (event_sourcing.correlation_id / causation_id / actor).
--
-- The database already holds the events of the earlier files: every stream
-- and category here is new, and reads of the whole log start after the
-- position below.
SELECT es_safe_position() AS upcast_start \gset

-- rows(stream): the stored rows of a stream, as written (never upcast)
CREATE FUNCTION regress.rows(s text)
RETURNS TABLE(v bigint, event_type text, data jsonb, schema_version int)
LANGUAGE sql AS $$
    SELECT stream_version, event_type, data, schema_version FROM es_events
     WHERE stream_id = s ORDER BY stream_version
$$;
-- chains(): the registered upcasters
CREATE FUNCTION regress.chains()
RETURNS TABLE(event_type text, from_schema int, upcast regprocedure, to_type text)
LANGUAGE sql AS $$
    SELECT event_type, from_schema, upcast, to_type FROM es_upcasters
     ORDER BY event_type COLLATE "C", from_schema
$$;

--
-- A chain of two steps: Measured 1 -> 2 (gains a unit), 2 -> 3 ("reading"
-- becomes "value"), with events stored in all three shapes.
--
CREATE FUNCTION measured_1_to_2(data jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$ SELECT data || '{"unit": "cm"}' $$;
CREATE FUNCTION measured_2_to_3(data jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$ SELECT (data - 'reading') || jsonb_build_object('value', data->'reading') $$;

-- schema 1: no upcaster yet ("Reset" never gets one)
SELECT es_append('meter-1', 0, 'Measured', '{"reading": 1}');
SELECT es_append('meter-2', 0, '[{"type": "Measured", "data": {"reading": 2}}, {"type": "Reset", "data": {"why": "new"}}]');
-- schema 2
SELECT es_define_upcaster('Measured', 1, 'measured_1_to_2(jsonb)');
SELECT es_append('meter-1', 1, 'Measured', '{"reading": 3, "unit": "mm"}');
-- schema 3
SELECT es_define_upcaster('Measured', 2, 'measured_2_to_3(jsonb)');
SELECT es_append('meter-1', 2, 'Measured', '{"value": 4, "unit": "m"}');
SELECT es_append('meter-2', 2, '[{"type": "Measured", "data": {"value": 5, "unit": "m"}}]');
SELECT * FROM regress.chains();

-- stored rows keep the shape and schema_version they were written in
SELECT * FROM regress.rows('meter-1');
SELECT * FROM regress.rows('meter-2');
-- every read path returns the newest shape, schema 3 (Reset: untouched, schema 1)
SELECT stream_version, event_type, data, schema_version FROM es_load('meter-1');
SELECT stream_version, event_type, data, schema_version FROM es_load('meter-2');
SELECT stream_version, event_type, data, schema_version FROM es_load('meter-1', 2, 2);
SELECT stream_id, stream_version, event_type, data, schema_version FROM es_read_category('meter');
SELECT stream_id, stream_version, event_type, data, schema_version FROM es_read_all(:upcast_start);
-- the other columns are the stored ones
SELECT count(*) AS same_other_columns
  FROM es_read_category('meter') r JOIN es_events e USING (global_position)
 WHERE (r.stream_id, r.stream_version, r.event_id, r.metadata, r.recorded_at)
     = (e.stream_id, e.stream_version, e.event_id, e.metadata, e.recorded_at);
-- es_load puts an upcast event into its result as values (es_upcast_put),
-- the others read through the slot (es_upcast_slot_held): the same rows
SELECT count(*) AS loaded, count(*) FILTER (WHERE l::text = r::text) AS same_rows
  FROM (SELECT * FROM es_load('meter-1') UNION ALL SELECT * FROM es_load('meter-2')) l
  JOIN es_read_category('meter') r USING (global_position);
-- reading changed no stored row
SELECT * FROM regress.rows('meter-1');
SELECT * FROM regress.rows('meter-2');

-- types without upcasters are returned as stored (all earlier events too)
SELECT count(*) > 100 AS many_events,
       bool_and(r.schema_version = 1 AND e.schema_version = 1
                AND r.event_type = e.event_type AND r.data = e.data) AS all_untouched
  FROM es_read_all(0, 100000) r JOIN es_events e USING (global_position)
 WHERE e.global_position <= :upcast_start AND e.event_type NOT IN ('MoneyDeposited', 'Measured');

--
-- The fold of es_aggregate and es_execute sees upcast events: this evolve
-- knows only the newest shape (data->>'value', data->>'unit').
--
CREATE FUNCTION meter_evolve(state jsonb, event es_events) RETURNS jsonb
LANGUAGE sql AS $$
    SELECT CASE event.event_type
        WHEN 'Measured' THEN
            state || jsonb_build_object(
                'total', (state->>'total')::numeric + (event.data->>'value')::numeric,
                'units', (state->'units') || to_jsonb(event.data->>'unit'),
                'schemas', (state->'schemas') || to_jsonb(event.schema_version))
        WHEN 'Reset' THEN
            state || '{"resets": 1}'
        ELSE state
    END
$$;
CREATE FUNCTION meter_decide(state jsonb, command jsonb) RETURNS jsonb
LANGUAGE sql AS $$
    SELECT jsonb_build_array(
        jsonb_build_object('type', 'Measured', 'data', jsonb_build_object('value', command->'value', 'unit', 'm')),
        jsonb_build_object('type', 'Totalled', 'data', jsonb_build_object('before', state->'total')))
$$;
SELECT es_define_aggregate('meter', 'meter_evolve(jsonb, es_events)',
                           '{"total": 0, "units": [], "schemas": []}', 'meter_decide(jsonb, jsonb)');
SELECT * FROM regress.fold('meter-1');
SELECT * FROM regress.fold('meter-2');
SELECT * FROM regress.fold('meter-1', 2);
-- es_execute folds the upcast events (Totalled.before), and its new events
-- are stored at the current schema of their types
SELECT es_execute('meter-1', '{"value": 10}');
SELECT * FROM regress.rows('meter-1') WHERE v > 3;
SELECT * FROM regress.fold('meter-1');

--
-- A rename: MoneyDeposited 1 -> 2 (gains a currency), 2 -> 3 renamed
-- FundsDeposited {value, currency}; FundsDeposited 1 -> 2 (gains a channel)
-- then applies to the renamed old events too.
--
CREATE FUNCTION deposited_v1_to_v2(data jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$ SELECT data || '{"currency": "EUR"}' $$;
CREATE FUNCTION deposited_v2_to_funds(data jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$ SELECT jsonb_build_object('value', data->'amount', 'currency', data->'currency') $$;
CREATE FUNCTION funds_v1_to_v2(data jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$ SELECT '{"channel": "unknown"}' || data $$;

SELECT es_append('purse-1', 0, '[{"type": "PurseOpened", "data": {"owner": "ann"}}, {"type": "MoneyDeposited", "data": {"amount": 10}}]');
SELECT es_define_upcaster('MoneyDeposited', 1, 'deposited_v1_to_v2(jsonb)');
SELECT es_append('purse-1', 2, 'MoneyDeposited', '{"amount": 20, "currency": "USD"}');
SELECT es_define_upcaster('MoneyDeposited', 2, 'deposited_v2_to_funds(jsonb)', 'FundsDeposited');
SELECT es_append('purse-1', 3, 'FundsDeposited', '{"value": 30, "currency": "GBP"}');
SELECT es_define_upcaster('FundsDeposited', 1, 'funds_v1_to_v2(jsonb)');
SELECT es_append('purse-1', 4, 'FundsDeposited', '{"value": 40, "currency": "EUR", "channel": "atm"}');
SELECT * FROM regress.chains() WHERE event_type IN ('MoneyDeposited', 'FundsDeposited');

SELECT * FROM regress.rows('purse-1');
-- every deposit reads as FundsDeposited at schema 2 {value, currency, channel}
SELECT stream_version, event_type, data, schema_version FROM es_load('purse-1');
SELECT stream_id, stream_version, event_type, data, schema_version FROM es_read_category('purse');
SELECT stream_id, stream_version, event_type, data, schema_version
  FROM es_read_all(:upcast_start) WHERE stream_id LIKE 'purse-%';
-- a renamed type, too (es_load's rows against es_read_category's)
SELECT count(*) AS loaded, count(*) FILTER (WHERE l::text = r::text) AS same_rows
  FROM es_load('purse-1') l JOIN es_read_category('purse') r USING (global_position);
SELECT * FROM regress.rows('purse-1');
-- upcasters belong to the event type, in every category: the bank accounts
-- of the aggregate file read their MoneyDeposited events as FundsDeposited
SELECT e.event_type AS stored, e.schema_version AS stored_schema, r.event_type, r.schema_version,
       bool_and(r.data = jsonb_build_object('value', e.data->'amount', 'currency', 'EUR', 'channel', 'unknown')) AS upcast_data
  FROM es_read_category('account', 0, 100000) r JOIN es_events e USING (global_position)
 WHERE e.event_type = 'MoneyDeposited'
 GROUP BY 1, 2, 3, 4;

--
-- es_define_upcaster validation, one case a line.  None of the failures
-- registers anything.
--
SELECT md5(string_agg(c::text, ',')) AS chains_before FROM regress.chains() c \gset

-- 22004: NULL event_type, from_schema or upcast (a NULL to_type keeps the type)
SELECT regress.err($$SELECT es_define_upcaster(NULL, 1, 'measured_1_to_2(jsonb)')$$);
SELECT regress.err($$SELECT es_define_upcaster('Fresh', NULL, 'measured_1_to_2(jsonb)')$$);
SELECT regress.err($$SELECT es_define_upcaster('Fresh', 1, NULL)$$);
SELECT regress.err($$SELECT es_define_upcaster('Fresh', 1, NULL, 'Other')$$);
-- 22023: event_type or to_type empty or over 255 bytes; to_type = event_type
SELECT regress.err($$SELECT es_define_upcaster('', 1, 'measured_1_to_2(jsonb)')$$);
SELECT regress.err($$SELECT es_define_upcaster(repeat('T', 256), 1, 'measured_1_to_2(jsonb)')$$);
SELECT regress.err($$SELECT es_define_upcaster(repeat('é', 128), 1, 'measured_1_to_2(jsonb)')$$);
SELECT regress.err($$SELECT es_define_upcaster('Fresh', 1, 'measured_1_to_2(jsonb)', '')$$);
SELECT regress.err($$SELECT es_define_upcaster('Fresh', 1, 'measured_1_to_2(jsonb)', repeat('T', 256))$$);
SELECT regress.err($$SELECT es_define_upcaster('Fresh', 1, 'measured_1_to_2(jsonb)', 'Fresh')$$);
-- 22023: from_schema 0 or negative
SELECT regress.err($$SELECT es_define_upcaster('Fresh', 0, 'measured_1_to_2(jsonb)')$$);
SELECT regress.err($$SELECT es_define_upcaster('Fresh', -1, 'measured_1_to_2(jsonb)')$$);
SELECT regress.err($$SELECT es_define_upcaster('Fresh', -2147483648, 'measured_1_to_2(jsonb)')$$);
-- 42710: a step that exists (upcasters are never replaced)
SELECT regress.err($$SELECT es_define_upcaster('Measured', 1, 'measured_2_to_3(jsonb)')$$);
SELECT regress.err($$SELECT es_define_upcaster('Measured', 2, 'measured_2_to_3(jsonb)')$$);
SELECT regress.err($$SELECT es_define_upcaster('FundsDeposited', 1, 'funds_v1_to_v2(jsonb)', 'Other')$$);
-- 22023: a gap (chains start at 1 and are consecutive)
SELECT regress.err($$SELECT es_define_upcaster('Fresh', 2, 'measured_1_to_2(jsonb)')$$);
SELECT regress.err($$SELECT es_define_upcaster('Measured', 4, 'measured_2_to_3(jsonb)')$$);
SELECT regress.err($$SELECT es_define_upcaster('Measured', 2147483647, 'measured_2_to_3(jsonb)')$$);
-- 22023: after a rename, the old type's chain is closed
SELECT regress.err($$SELECT es_define_upcaster('MoneyDeposited', 3, 'funds_v1_to_v2(jsonb)')$$);
SELECT regress.err($$SELECT es_define_upcaster('MoneyDeposited', 3, 'funds_v1_to_v2(jsonb)', 'Other')$$);

-- 42P13: upcast must take (jsonb) and return jsonb, one value, a plain function
CREATE FUNCTION up_bad_arg(data json) RETURNS jsonb LANGUAGE sql AS $$ SELECT data::jsonb $$;
CREATE FUNCTION up_bad_ret(data jsonb) RETURNS json LANGUAGE sql AS $$ SELECT data::json $$;
CREATE FUNCTION up_bad_text(data jsonb) RETURNS text LANGUAGE sql AS $$ SELECT data::text $$;
CREATE FUNCTION up_bad_two(data jsonb, extra jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT data $$;
CREATE FUNCTION up_bad_default(data jsonb, extra int DEFAULT 0) RETURNS jsonb LANGUAGE sql AS $$ SELECT data $$;
CREATE FUNCTION up_bad_none() RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
CREATE FUNCTION up_bad_variadic(VARIADIC data jsonb[]) RETURNS jsonb LANGUAGE sql AS $$ SELECT data[1] $$;
CREATE FUNCTION up_bad_srf(data jsonb) RETURNS SETOF jsonb LANGUAGE sql AS $$ SELECT data $$;
CREATE PROCEDURE up_bad_proc(data jsonb) LANGUAGE sql AS $$ SELECT 1 $$;
CREATE AGGREGATE up_bad_agg(jsonb) (SFUNC = jsonb_concat, STYPE = jsonb);
SELECT regress.err($$SELECT es_define_upcaster('Fresh', 1, 'up_bad_arg(json)')$$);
SELECT regress.err($$SELECT es_define_upcaster('Fresh', 1, 'up_bad_ret(jsonb)')$$);
SELECT regress.err($$SELECT es_define_upcaster('Fresh', 1, 'up_bad_text(jsonb)')$$);
SELECT regress.err($$SELECT es_define_upcaster('Fresh', 1, 'up_bad_two(jsonb, jsonb)')$$);
SELECT regress.err($$SELECT es_define_upcaster('Fresh', 1, 'up_bad_default(jsonb, int)')$$);
SELECT regress.err($$SELECT es_define_upcaster('Fresh', 1, 'up_bad_none()')$$);
SELECT regress.err($$SELECT es_define_upcaster('Fresh', 1, 'up_bad_variadic(jsonb[])')$$);
SELECT regress.err($$SELECT es_define_upcaster('Fresh', 1, 'up_bad_srf(jsonb)')$$);
SELECT regress.err($$SELECT es_define_upcaster('Fresh', 1, 'up_bad_proc(jsonb)')$$);
SELECT regress.err($$SELECT es_define_upcaster('Fresh', 1, 'up_bad_agg(jsonb)')$$);
SELECT regress.err($$SELECT es_define_upcaster('Fresh', 1, 'meter_evolve(jsonb, es_events)')$$);
-- 42883: no such function
SELECT regress.err($$SELECT es_define_upcaster('Fresh', 1, 0)$$);
SELECT regress.err($$SELECT es_define_upcaster('Fresh', 1, 'no_such_upcaster(jsonb)')$$);
-- 25006: in a read-only transaction
BEGIN READ ONLY;
SELECT regress.err($$SELECT es_define_upcaster('Fresh', 1, 'measured_1_to_2(jsonb)')$$);
ROLLBACK;
-- nothing was registered by the failed calls
SELECT md5(string_agg(c::text, ',')) = :'chains_before' AS chains_unchanged FROM regress.chains() c;
SELECT count(*) AS fresh_steps FROM es_upcasters WHERE event_type IN ('Fresh', 'Other');

--
-- Privileges: EXECUTE on the upcaster, for the role that registers it
-- (42501) and, at every read, for that role, its owner: the upcaster runs as
-- its owner, never as the reader (42501 from es_load and the other read
-- paths, whoever reads).
--
CREATE FUNCTION guarded_1_to_2(data jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$ SELECT data || '{"guarded": true}' $$;
REVOKE EXECUTE ON FUNCTION guarded_1_to_2(jsonb) FROM PUBLIC;
CREATE ROLE regress_es_up;
GRANT USAGE ON SCHEMA regress TO regress_es_up;
GRANT EXECUTE ON FUNCTION es_define_upcaster(text, integer, regprocedure, text),
                          es_append(text, bigint, text, jsonb, jsonb, uuid),
                          es_load(text, bigint, bigint),
                          es_read_category(text, bigint, integer) TO regress_es_up;
SELECT es_append('guarded-1', 0, 'Guarded', '{"n": 1}');
SET ROLE regress_es_up;
SELECT regress.err($$SELECT es_define_upcaster('Guarded', 1, 'guarded_1_to_2(jsonb)')$$);
RESET ROLE;
SELECT count(*) AS guarded_steps FROM es_upcasters WHERE event_type = 'Guarded';
-- with EXECUTE, the role registers it and reads through it
GRANT EXECUTE ON FUNCTION guarded_1_to_2(jsonb) TO regress_es_up;
SET ROLE regress_es_up;
SELECT es_define_upcaster('Guarded', 1, 'guarded_1_to_2(jsonb)');
SELECT es_append('guarded-1', 1, 'Guarded', '{"n": 2, "guarded": false}');
SELECT stream_version, event_type, data, schema_version FROM es_load('guarded-1');
RESET ROLE;
SELECT event_type, from_schema, owner, search_path FROM es_upcasters WHERE event_type = 'Guarded';
-- once the owner loses EXECUTE, every read of the type fails, a superuser's
-- included: the upcaster runs as its owner
REVOKE EXECUTE ON FUNCTION guarded_1_to_2(jsonb) FROM regress_es_up;
SET ROLE regress_es_up;
SELECT regress.err($$SELECT * FROM es_load('guarded-1')$$);
SELECT regress.err($$SELECT * FROM es_read_category('guarded')$$);
RESET ROLE;
SELECT regress.err($$SELECT * FROM es_load('guarded-1')$$);
GRANT EXECUTE ON FUNCTION guarded_1_to_2(jsonb) TO PUBLIC;
SELECT stream_version, event_type, data, schema_version FROM es_load('guarded-1');
-- a dropped owner: reads of the type fail until the extension's owner gives
-- the steps another owner (then a function change reloads every registry)
DROP OWNED BY regress_es_up;
DROP ROLE regress_es_up;
SELECT regress.err($$SELECT * FROM es_load('guarded-1')$$);
UPDATE es_upcasters SET owner = current_user::regrole WHERE event_type = 'Guarded';
CREATE FUNCTION up_reload_owner(data jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT data $$;
SELECT stream_version, event_type, data, schema_version FROM es_load('guarded-1');

--
-- Broken upcasters fail the read (the stored rows stay as they are).  They
-- are registered in a transaction that is rolled back, so that the later
-- files can still read the whole log.
--
CREATE FUNCTION up_array(data jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$ SELECT '[1, 2]'::jsonb $$;
CREATE FUNCTION up_scalar(data jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$ SELECT '"text"'::jsonb $$;
CREATE FUNCTION up_same(data jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$ SELECT data $$;
BEGIN;
SELECT es_append('broken-1', 0, 'Arrayed', '{"a": 1}');
SELECT es_append('broken-2', 0, 'Scalared', '{"b": 2}');
SELECT es_append('cycle-1', 0, '[{"type": "CycleA", "data": {"c": 3}}, {"type": "CycleB", "data": {"d": 4}}]');
SELECT es_define_upcaster('Arrayed', 1, 'up_array(jsonb)');
SELECT es_define_upcaster('Scalared', 1, 'up_scalar(jsonb)');
-- 22023: a cycle of renames is refused when registered ...
SELECT es_define_upcaster('CycleA', 1, 'up_same(jsonb)', 'CycleB');
SELECT regress.err($$SELECT es_define_upcaster('CycleB', 1, 'up_same(jsonb)', 'CycleA')$$);
-- ... and one written into es_upcasters by hand (then any function change
-- makes every backend reload the registry) stops the read after 1000 steps
INSERT INTO es_upcasters (event_type, from_schema, upcast, to_type, owner, search_path)
    VALUES ('CycleB', 1, 'up_same(jsonb)', 'CycleA', current_user::regrole, 'pg_temp');
CREATE FUNCTION up_reload(data jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT data $$;
-- 22023: an upcaster returned something other than a JSON object
SELECT regress.err($$SELECT * FROM es_load('broken-1')$$);
SELECT regress.err($$SELECT * FROM es_load('broken-2')$$);
SELECT regress.err($$SELECT * FROM es_read_category('broken')$$);
SELECT regress.err($$SELECT * FROM es_read_all($$ || :upcast_start || $$, 100000)$$);
-- 42P19: the hand-made cycle fails the read after 1000 steps
SELECT regress.err($$SELECT * FROM es_load('cycle-1')$$);
SELECT regress.err($$SELECT * FROM es_load('cycle-1', 2)$$);
SELECT regress.err($$SELECT * FROM es_read_category('cycle')$$);
-- 22004: an upcaster returned NULL
CREATE FUNCTION up_null(data jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT NULL::jsonb $$;
SELECT es_append('nulled-1', 0, 'Nulled', '{}');
SELECT es_define_upcaster('Nulled', 1, 'up_null(jsonb)');
SELECT regress.err($$SELECT * FROM es_load('nulled-1')$$);
-- 22023: a non-object in the middle of a chain fails too, not just at its end
CREATE FUNCTION up_wrap(data jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT jsonb_build_object('w', data) $$;
SELECT es_append('mid-1', 0, 'Mid', '{"m": 1}');
SELECT es_define_upcaster('Mid', 1, 'up_array(jsonb)');
SELECT es_define_upcaster('Mid', 2, 'up_wrap(jsonb)');
SELECT regress.err($$SELECT * FROM es_load('mid-1')$$);
-- the stored rows are untouched
SELECT * FROM regress.rows('broken-1');
SELECT * FROM regress.rows('broken-2');
SELECT * FROM regress.rows('cycle-1');
ROLLBACK;

--
-- An event appended under a type that was renamed away is recorded at the
-- renaming step, so readers see it renamed like the old ones.
--
BEGIN;
CREATE FUNCTION up_rename(data jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT data || '{"renamed": true}' $$;
SELECT es_append('old-1', 0, 'OldName', '{"n": 1}');
SELECT es_define_upcaster('OldName', 1, 'up_rename(jsonb)', 'NewName');
SELECT es_append('old-1', 1, 'OldName', '{"n": 2}');
SELECT es_append('old-1', 2, 'NewName', '{"n": 3}');
SELECT stream_version, event_type, schema_version FROM es_events WHERE stream_id = 'old-1' ORDER BY stream_version;
SELECT stream_version, event_type, data, schema_version FROM es_load('old-1');
ROLLBACK;

--
-- A snapshot is only as good as the upcasters it was folded with: registering
-- one makes older snapshots unusable.
--
BEGIN;
CREATE FUNCTION cents_evolve(state jsonb, e es_events) RETURNS jsonb LANGUAGE sql AS
  $$ SELECT jsonb_build_object('sum', (state->>'sum')::numeric + (e.data->>'amount')::numeric) $$;
CREATE FUNCTION to_cents(d jsonb) RETURNS jsonb LANGUAGE sql AS
  $$ SELECT jsonb_build_object('amount', (d->>'amount')::numeric * 100) $$;
SELECT es_define_aggregate('cents', 'cents_evolve(jsonb, es_events)', '{"sum": 0}', NULL, 1);
SELECT es_append('cents-1', 0, '[{"type": "Paid", "data": {"amount": 1}}, {"type": "Paid", "data": {"amount": 2}}]');
SELECT version, state FROM es_aggregate('cents-1');
SELECT count(*) AS snapshots FROM es_snapshots WHERE stream_id = 'cents-1';
SELECT es_define_upcaster('Paid', 1, 'to_cents(jsonb)');
SELECT version, state FROM es_aggregate('cents-1');
ROLLBACK;

--
-- A reader needs no EXECUTE on upcasters: they run as their owner (who
-- keeps it here: the superuser).
--
BEGIN;
CREATE FUNCTION up_tag(data jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT data || '{"tagged": true}' $$;
CREATE ROLE regress_es_up2;
GRANT USAGE ON SCHEMA regress TO regress_es_up2;
GRANT EXECUTE ON FUNCTION es_load(text, bigint, bigint) TO regress_es_up2;
SELECT es_append('tagged-1', 0, 'Tagged', '{}');
SELECT es_append('plain-9', 0, 'Untagged', '{}');
SELECT es_define_upcaster('Tagged', 1, 'up_tag(jsonb)');
REVOKE EXECUTE ON FUNCTION up_tag(jsonb) FROM PUBLIC;
SET ROLE regress_es_up2;
SELECT event_type, data FROM es_load('plain-9');
SELECT regress.err($$SELECT * FROM es_load('tagged-1')$$);
RESET ROLE;
ROLLBACK;
-- the rollback took the upcasters away with the events
SELECT count(*) AS broken_steps FROM es_upcasters WHERE event_type IN ('Arrayed', 'Scalared', 'CycleA', 'CycleB');
SELECT count(*) > 0 AS read_all_works FROM es_read_all(:upcast_start, 100000);

--
-- Audit metadata from event_sourcing.correlation_id / causation_id / actor.
--
-- unset: the metadata as given
SHOW event_sourcing.correlation_id;
SELECT es_append('audit-1', 0, 'Noted', '{}');
SELECT es_append('audit-1', 1, 'Noted', '{}', '{"k": 1}');
-- set: merged into single and batch appends; the event's own key wins
SET event_sourcing.correlation_id = 'corr-1';
SET event_sourcing.causation_id = 'cause-1';
SET event_sourcing.actor = 'alice';
SELECT es_append('audit-1', 2, 'Noted', '{}');
SELECT es_append('audit-1', 3, 'Noted', '{}', '{"k": 2, "actor": "bob"}');
SELECT es_append('audit-1', 4, 'Noted', '{}', '{"correlation_id": null}');
SELECT es_append('audit-1', 5, '[{"type": "Noted", "data": {}},
                                 {"type": "Noted", "data": {}, "metadata": {"causation_id": "own", "k": 3}},
                                 {"type": "Noted", "data": {}, "metadata": null}]');
-- an empty string is unset
SET event_sourcing.causation_id = '';
SELECT es_append('audit-1', 8, 'Noted', '{}');
RESET event_sourcing.correlation_id;
RESET event_sourcing.actor;
SELECT es_append('audit-1', 9, 'Noted', '{}');
RESET event_sourcing.causation_id;
SELECT es_append('audit-1', 10, 'Noted', '{}', '{"k": 4}');
-- SET LOCAL: only inside its transaction; es_execute picks the settings up too
BEGIN;
SET LOCAL event_sourcing.correlation_id = 'req-7';
SET LOCAL event_sourcing.actor = 'carol';
SELECT es_append('audit-1', 11, 'Noted', '{}');
SELECT es_execute('meter-2', '{"value": 6}');
COMMIT;
SHOW event_sourcing.correlation_id;
SELECT es_append('audit-1', 12, 'Noted', '{}');
SELECT es_execute('meter-2', '{"value": 7}');
BEGIN;
SET LOCAL event_sourcing.actor = 'dave';
SELECT es_append('audit-1', 13, 'Noted', '{}');
ROLLBACK;
SELECT es_append('audit-1', 13, 'Noted', '{}');
SELECT stream_version, metadata FROM es_load('audit-1');
SELECT stream_version, event_type, data, metadata FROM es_load('meter-2', 4);
-- the stored metadata is what es_load returned
SELECT count(*) AS same_metadata FROM es_load('audit-1') r JOIN es_events e USING (global_position)
 WHERE r.metadata = e.metadata;

--
-- Upcast rows of every shape: es_load (es_upcast_put) and es_read_all
-- (es_upcast_slot_held) copy the stored columns before the first one that
-- changed and lay out the rest: the rows equal the stored columns around
-- the upcast ones, with small and large data and metadata, stored inline,
-- compressed or out of line, with and without a rename.
--
CREATE FUNCTION regress.sized_up(d jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$ SELECT d || jsonb_build_object('pad', repeat('y', (d->>'n')::int)) $$;
SELECT es_append('sized-1', 0, jsonb_build_array(
    jsonb_build_object('type', 'Sized', 'data', jsonb_build_object('n', 0)),
    jsonb_build_object('type', 'Sized', 'data', jsonb_build_object('n', 200), 'metadata', jsonb_build_object('k', 'v')),
    jsonb_build_object('type', 'SizedOld', 'data', jsonb_build_object('n', 1)),
    jsonb_build_object('type', 'Sized', 'data', jsonb_build_object('n', 1, 'blob', repeat('a', 5000))),
    jsonb_build_object('type', 'SizedOld', 'data', jsonb_build_object('n', 300),
                       'metadata', jsonb_build_object('m', repeat('m', 5000))),
    jsonb_build_object('type', 'Sized', 'data', jsonb_build_object('n', 2, 'blob',
                       (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 300) i))),
    jsonb_build_object('type', 'Sized', 'data', jsonb_build_object('n', 3, 'blob', repeat('b', 500)))));
SELECT es_define_upcaster('Sized', 1, 'regress.sized_up(jsonb)');
SELECT es_define_upcaster('SizedOld', 1, 'regress.sized_up(jsonb)', 'SizedNew');
-- how they are stored: short header (s), 4-byte header (l), compressed (c)
-- or out of line (x: too large to be in a row)
CREATE FUNCTION regress.stored_as(v jsonb) RETURNS text
LANGUAGE sql AS $$
    SELECT CASE WHEN pg_column_size(v) > 2000 THEN 'x'
                WHEN pg_column_compression(v) IS NOT NULL THEN 'c'
                WHEN pg_column_size(v) < 127 THEN 's' ELSE 'l' END
$$;
SELECT stream_version, event_type, regress.stored_as(data) AS data,
       regress.stored_as(metadata) AS metadata
  FROM es_events WHERE stream_id = 'sized-1' ORDER BY stream_version;
-- (the expected row is built in SQL from the stored one)
SELECT l.stream_version, l.event_type, l.schema_version, length(l.data->>'pad') AS pad,
       l::text = ROW(e.global_position, e.stream_id, e.stream_version, e.event_id,
                     CASE e.event_type WHEN 'SizedOld' THEN 'SizedNew' ELSE e.event_type END,
                     regress.sized_up(e.data), e.metadata, e.recorded_at,
                     CASE e.event_type WHEN 'SizedOld' THEN 1 ELSE 2 END)::es_events::text AS load_ok,
       a::text = l::text AS read_all_ok
  FROM es_load('sized-1') l JOIN es_events e USING (global_position)
  JOIN (SELECT * FROM es_read_all(:upcast_start) WHERE stream_id = 'sized-1') a USING (global_position)
 ORDER BY l.stream_version;

--
-- cleanup: meter_evolve takes es_events, so it must go before the extension
-- can be dropped (security drops it)
--
DROP FUNCTION meter_evolve(jsonb, es_events), up_bad_arg(json), up_bad_ret(jsonb), up_bad_text(jsonb),
              up_bad_two(jsonb, jsonb), up_bad_default(jsonb, int), up_bad_none(),
              up_bad_variadic(jsonb[]), up_bad_srf(jsonb);
DROP PROCEDURE up_bad_proc(jsonb);
DROP AGGREGATE up_bad_agg(jsonb);
