--
-- import: es_import, bulk import of historical events (src/import.c):
-- validation as es_append validates, streams continued from what is
-- stored, ids and timestamps kept, positions in (recorded_at, stream_id in
-- byte order, stream_version) order, nothing stored on any error, the
-- caller's privileges on the source, no inline dispatch.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS event_sourcing;
RESET client_min_messages;
CREATE SCHEMA imp;
SET search_path = imp, public;
\pset null '(null)'

-- err(sql) with the es_import context line: which source row it was about
CREATE FUNCTION imp.err(sql text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    st text; msg text; det text; hint text; ctx text;
BEGIN
    EXECUTE sql;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
        det = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT, ctx = PG_EXCEPTION_CONTEXT;
    RETURN st || ': ' || msg
        || CASE WHEN det <> '' THEN E'\n  DETAIL: ' || det ELSE '' END
        || CASE WHEN hint <> '' THEN E'\n  HINT: ' || hint ELSE '' END
        || coalesce(E'\n  CONTEXT: ' || substring(ctx from 'es_import of [^\n]*'), '');
END
$$;

-- the store before any import, to show that a failed one changed nothing
CREATE TABLE imp.before AS SELECT regress.store_digest() AS digest;
CREATE FUNCTION imp.unchanged() RETURNS text LANGUAGE sql AS $$
    SELECT CASE WHEN regress.store_digest() = digest THEN 'store unchanged'
                ELSE 'STORE CHANGED: ' || regress.store_digest() END FROM imp.before
$$;

-- an inline projection that counts what it is given: es_import dispatches
-- nothing to it
CREATE TABLE imp.seen (n int);
INSERT INTO imp.seen VALUES (0);
CREATE FUNCTION imp.count_seen(e es_events) RETURNS void
LANGUAGE sql AS $$ UPDATE imp.seen SET n = n + 1 $$;
SELECT es_define_projection('imp_seen', 'imp.count_seen(es_events)');

--
-- A source with every column (plus one es_import ignores), out of order.
-- Two rows share a timestamp: stream 'B-1' sorts before 'a-1' in byte
-- order, whatever the database's collation.
--
CREATE TABLE imp.legacy (
    note           text,
    stream_id      text,
    stream_version int,              -- cast to bigint
    event_type     text,
    data           json,             -- cast to jsonb
    metadata       jsonb,
    event_id       uuid,
    recorded_at    timestamptz
);
INSERT INTO imp.legacy VALUES
  ('x', 'a-1', 2, 'Deposited', '{"amount": 5}',  NULL,               'aaaaaaaa-0000-0000-0000-000000000002', '2020-01-02 10:00+00'),
  ('x', 'a-1', 1, 'Opened',    '{"owner": "ann"}', '{"src": "old"}', 'aaaaaaaa-0000-0000-0000-000000000001', '2020-01-01 10:00+00'),
  ('x', 'B-1', 1, 'Opened',    '{"owner": "bob"}', '{}',             NULL,                                   '2020-01-02 10:00+00'),
  ('x', 'a-1', 3, 'Deposited', '{"amount": 7}',  '{}',               'aaaaaaaa-0000-0000-0000-000000000003', '2020-01-03 10:00+00');

SELECT es_import('imp.legacy');
SELECT global_position - min(global_position) OVER () + 1 AS pos, stream_id, stream_version,
       event_type, data, metadata, recorded_at AT TIME ZONE 'UTC' AS recorded_utc,
       schema_version,
       CASE WHEN event_id::text LIKE 'aaaaaaaa-%' THEN event_id::text
            ELSE 'generated, version ' || substr(event_id::text, 15, 1) END AS id
  FROM es_events WHERE stream_id IN ('a-1', 'B-1') ORDER BY global_position;

-- the inline projection was not dispatched
SELECT n AS dispatched FROM imp.seen;

-- es_append continues an imported stream, after its last recorded_at
SELECT es_append('a-1', 3, 'Deposited', '{"amount": 1}');
SELECT stream_version, recorded_at > '2020-01-03 10:00+00' AS later
  FROM es_load('a-1', 4);
SELECT n AS dispatched FROM imp.seen;
UPDATE imp.before SET digest = regress.store_digest();

--
-- Continuing stored streams: the source's first version of a stream must
-- be its stored version plus one, and no older than its last event.
--
CREATE TABLE imp.more (stream_id text, stream_version bigint, event_type text,
                       data jsonb, recorded_at timestamptz);
INSERT INTO imp.more VALUES ('B-1', 2, 'Renamed', '{"to": "bo"}', '2021-01-01'),
                            ('new-1', 1, 'Opened', '{}', '2021-01-01');
SELECT es_import('imp.more');
SELECT stream_id, stream_version, event_type FROM es_events
 WHERE stream_id IN ('B-1', 'new-1') ORDER BY global_position;
UPDATE imp.before SET digest = regress.store_digest();

-- a repeat of a stored version, a gap, a version out of time order, and an
-- event older than the stream's last one: 22023, nothing stored
TRUNCATE imp.more;
INSERT INTO imp.more VALUES ('B-1', 2, 'Renamed', '{}', '2022-01-01');
SELECT imp.err($$SELECT es_import('imp.more')$$);
TRUNCATE imp.more;
INSERT INTO imp.more VALUES ('fresh-1', 1, 'Opened', '{}', '2022-01-01'),
                            ('fresh-1', 3, 'Noted', '{}', '2022-01-03');
SELECT imp.err($$SELECT es_import('imp.more')$$);
TRUNCATE imp.more;
INSERT INTO imp.more VALUES ('fresh-1', 1, 'Opened', '{}', '2022-01-02'),
                            ('fresh-1', 2, 'Noted', '{}', '2022-01-01');
SELECT imp.err($$SELECT es_import('imp.more')$$);
TRUNCATE imp.more;
INSERT INTO imp.more VALUES ('B-1', 3, 'Renamed', '{}', '2020-06-01 00:00+00');
SELECT imp.err($$SELECT es_import('imp.more')$$);
-- the same version twice in the source
TRUNCATE imp.more;
INSERT INTO imp.more VALUES ('fresh-1', 1, 'Opened', '{}', '2022-01-01'),
                            ('fresh-1', 1, 'Opened', '{}', '2022-01-01');
SELECT imp.err($$SELECT es_import('imp.more')$$);
SELECT imp.unchanged();

--
-- Shapes, as es_append checks them (22004, 22023), naming the source row.
--
TRUNCATE imp.more;
INSERT INTO imp.more VALUES ('ok-1', 1, 'Opened', '{}', '2022-01-01'),
                            (NULL, 1, 'Opened', '{}', '2022-01-02');
SELECT imp.err($$SELECT es_import('imp.more')$$);
TRUNCATE imp.more;
INSERT INTO imp.more VALUES ('ok-1', NULL, 'Opened', '{}', '2022-01-01');
SELECT imp.err($$SELECT es_import('imp.more')$$);
TRUNCATE imp.more;
INSERT INTO imp.more VALUES ('ok-1', 1, NULL, '{}', '2022-01-01');
SELECT imp.err($$SELECT es_import('imp.more')$$);
TRUNCATE imp.more;
INSERT INTO imp.more VALUES ('ok-1', 1, 'Opened', NULL, '2022-01-01');
SELECT imp.err($$SELECT es_import('imp.more')$$);
TRUNCATE imp.more;
INSERT INTO imp.more VALUES ('ok-1', 1, 'Opened', '{}', NULL);
SELECT imp.err($$SELECT es_import('imp.more')$$);
TRUNCATE imp.more;
INSERT INTO imp.more VALUES ('', 1, 'Opened', '{}', '2022-01-01');
SELECT imp.err($$SELECT es_import('imp.more')$$);
TRUNCATE imp.more;
INSERT INTO imp.more VALUES (repeat('s', 256), 1, 'Opened', '{}', '2022-01-01');
SELECT imp.err($$SELECT es_import('imp.more')$$);
TRUNCATE imp.more;
INSERT INTO imp.more VALUES ('ok-1', 1, '', '{}', '2022-01-01');
SELECT imp.err($$SELECT es_import('imp.more')$$);
TRUNCATE imp.more;
INSERT INTO imp.more VALUES ('ok-1', 1, 'Opened', '[1, 2]', '2022-01-01');
SELECT imp.err($$SELECT es_import('imp.more')$$);
CREATE TABLE imp.badmeta (stream_id text, stream_version bigint, event_type text,
                          data jsonb, metadata jsonb);
INSERT INTO imp.badmeta VALUES ('ok-1', 1, 'Opened', '{}', '"text"');
SELECT imp.err($$SELECT es_import('imp.badmeta')$$);
SELECT imp.unchanged();

--
-- Event ids: unique across the store (23505), whether stored already or
-- given twice in the source.
--
CREATE TABLE imp.ids (stream_id text, stream_version bigint, event_type text,
                      data jsonb, event_id uuid);
INSERT INTO imp.ids VALUES ('id-1', 1, 'Opened', '{}', 'aaaaaaaa-0000-0000-0000-000000000002');
SELECT imp.err($$SELECT es_import('imp.ids')$$);
TRUNCATE imp.ids;
INSERT INTO imp.ids VALUES ('id-1', 1, 'Opened', '{}', 'bbbbbbbb-0000-0000-0000-000000000001'),
                           ('id-2', 1, 'Opened', '{}', 'bbbbbbbb-0000-0000-0000-000000000001');
SELECT imp.err($$SELECT es_import('imp.ids')$$);
SELECT imp.unchanged();

--
-- The source: required columns (42703), the kind of relation (42809), a
-- NULL source (22004), an empty source (0 imported, nothing changed).
--
CREATE TABLE imp.nodata (stream_id text, stream_version bigint, event_type text);
SELECT imp.err($$SELECT es_import('imp.nodata')$$);
CREATE SEQUENCE imp.seq;
SELECT imp.err($$SELECT es_import('imp.seq')$$);
SELECT imp.err($$SELECT es_import(NULL)$$);
-- a value the store's type does not accept: the cast fails while the source
-- is read
CREATE TABLE imp.textual (stream_id text, stream_version text, event_type text, data text);
INSERT INTO imp.textual VALUES ('t-1', '1', 'Opened', '{"ok": true}'), ('t-1', '2', 'Noted', '{not json');
SELECT imp.err($$SELECT es_import('imp.textual')$$);
TRUNCATE imp.textual;
INSERT INTO imp.textual VALUES ('t-1', 'one', 'Opened', '{}');
SELECT imp.err($$SELECT es_import('imp.textual')$$);
TRUNCATE imp.more;
SELECT es_import('imp.more');
SELECT imp.unchanged();

--
-- A view renames and derives columns; without recorded_at the events are
-- recorded now (never earlier than the stream's last event), in stream,
-- then version order.  schema_version places old shapes under the type's
-- upcasters.
--
CREATE FUNCTION imp.temp_1_to_2(d jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE
AS $$ SELECT jsonb_build_object('celsius', d -> 'c') $$;
SELECT es_define_upcaster('TempRead', 1, 'imp.temp_1_to_2(jsonb)');
CREATE TABLE imp.readings (sensor int, seq int, c numeric, v int);
INSERT INTO imp.readings VALUES (2, 1, 20.5, 1), (1, 1, 19, 1), (1, 2, 21, 2), (2, 2, 22, NULL);
CREATE VIEW imp.readings_src AS
SELECT 'sensor-' || sensor AS stream_id, seq AS stream_version, 'TempRead' AS event_type,
       CASE WHEN v = 1 THEN jsonb_build_object('c', c) ELSE jsonb_build_object('celsius', c) END AS data,
       v AS schema_version
  FROM imp.readings;
SELECT now() AS before_import \gset
SELECT es_import('imp.readings_src');
SELECT stream_id, stream_version, data, schema_version,
       recorded_at >= :'before_import' AS recorded_now
  FROM es_events WHERE stream_id LIKE 'sensor-%' ORDER BY global_position;
SELECT stream_version, data FROM es_load('sensor-1');
-- a schema version the type does not have
CREATE TABLE imp.future (stream_id text, stream_version bigint, event_type text,
                         data jsonb, schema_version int);
INSERT INTO imp.future VALUES ('sensor-3', 1, 'TempRead', '{}', 3);
SELECT imp.err($$SELECT es_import('imp.future')$$);
UPDATE imp.before SET digest = regress.store_digest();

--
-- Many rows: several fetches from the source (1,000 rows each), streams
-- spread over them.
--
CREATE TABLE imp.bulk AS
SELECT 'bulk-' || (g % 7) AS stream_id, g / 7 + 1 AS stream_version, 'Tick' AS event_type,
       jsonb_build_object('g', g) AS data,
       timestamptz '2023-01-01' + g * interval '1 second' AS recorded_at
  FROM generate_series(0, 4999) g;
SELECT es_import('imp.bulk');
SELECT count(*) AS events, count(DISTINCT stream_id) AS streams,
       bool_and(data->>'g' = ((stream_version - 1) * 7 + substr(stream_id, 6)::int)::text) AS in_place
  FROM es_events WHERE stream_id LIKE 'bulk-%';
-- positions follow recorded_at
SELECT bool_and(ok) AS positions_follow_recorded_at FROM (
  SELECT recorded_at >= lag(recorded_at) OVER (ORDER BY global_position) AS ok
    FROM es_events WHERE stream_id LIKE 'bulk-%') s;
SELECT es_stream_version('bulk-0'), es_stream_version('bulk-6');

-- With a row trigger of its own on es_events, each row is inserted on its
-- own (the trigger sees every row); the result is the same.
CREATE TABLE imp.trigger_saw (stream_id text, stream_version bigint);
CREATE FUNCTION imp.saw() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO imp.trigger_saw VALUES (NEW.stream_id, NEW.stream_version);
    RETURN NULL;
END $$;
CREATE TRIGGER imp_saw AFTER INSERT ON es_events FOR EACH ROW EXECUTE FUNCTION imp.saw();
CREATE TABLE imp.bulk2 AS
SELECT replace(stream_id, 'bulk-', 'bulk2-') AS stream_id, stream_version, event_type, data, recorded_at
  FROM imp.bulk;
SELECT es_import('imp.bulk2');
DROP TRIGGER imp_saw ON es_events;
SELECT count(*) AS trigger_saw, count(DISTINCT (stream_id, stream_version)) AS distinct_rows FROM imp.trigger_saw;
SELECT count(*) AS same_rows FROM es_events a JOIN es_events b
    ON b.stream_id = replace(a.stream_id, 'bulk-', 'bulk2-') AND b.stream_version = a.stream_version
   AND b.data = a.data AND b.recorded_at = a.recorded_at
 WHERE a.stream_id LIKE 'bulk-%';

--
-- Privileges: EXECUTE on es_import is not granted to PUBLIC; the source is
-- read with the caller's own privileges.
--
UPDATE imp.before SET digest = regress.store_digest();
CREATE ROLE regress_es_importer;
GRANT USAGE ON SCHEMA imp, regress TO regress_es_importer;
CREATE TABLE imp.secret (stream_id text, stream_version bigint, event_type text, data jsonb);
INSERT INTO imp.secret VALUES ('secret-1', 1, 'Opened', '{}');
SET ROLE regress_es_importer;
SELECT imp.err($$SELECT es_import('imp.secret')$$);
RESET ROLE;
GRANT EXECUTE ON FUNCTION es_import(regclass) TO regress_es_importer;
SET ROLE regress_es_importer;
SELECT imp.err($$SELECT es_import('imp.secret')$$);
RESET ROLE;
GRANT SELECT ON imp.secret TO regress_es_importer;
SET ROLE regress_es_importer;
SELECT es_import('imp.secret');
RESET ROLE;
SELECT stream_id, stream_version FROM es_events WHERE stream_id = 'secret-1';

-- an import inside a transaction that rolls back leaves nothing
UPDATE imp.before SET digest = regress.store_digest();
TRUNCATE imp.more;
INSERT INTO imp.more VALUES ('rolled-1', 1, 'Opened', '{}', '2024-01-01');
BEGIN;
SELECT es_import('imp.more');
ROLLBACK;
SELECT imp.unchanged();

-- read-only transaction: 25006
BEGIN READ ONLY;
SELECT imp.err($$SELECT es_import('imp.more')$$);
ROLLBACK;

-- examples/migrate.sql runs as the README says
SELECT es_drop_projection('imp_seen');
SET client_min_messages = warning;
\i examples/migrate.sql
RESET client_min_messages;

SET client_min_messages = warning;
DROP SCHEMA imp CASCADE;
RESET client_min_messages;
DROP OWNED BY regress_es_importer;
DROP ROLE regress_es_importer;
