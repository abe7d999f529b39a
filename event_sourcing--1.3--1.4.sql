/* event_sourcing--1.3--1.4.sql: performance at scale, bulk import */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION event_sourcing UPDATE TO '1.4'" to load this file. \quit

--
-- Bulk import of historical events (src/import.c).  Reads the source with
-- the caller's privileges; validates and inserts as es_append does, keeping
-- the given ids and timestamps; does not dispatch inline projections.
--
CREATE FUNCTION @extschema@.es_import(source regclass)
    RETURNS bigint
    AS 'MODULE_PATHNAME', 'es_import'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION @extschema@.es_import(regclass) IS
    'Imports historical events from a table or view (stream_id, stream_version, event_type, data[, metadata, event_id, recorded_at, schema_version]) in order of recorded_at, stream_id, stream_version; returns the number imported';

REVOKE ALL ON FUNCTION @extschema@.es_import(regclass) FROM PUBLIC;
