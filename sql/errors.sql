--
-- errors: every row of the contract's error table, one case a line.
-- Every failed call leaves the store exactly as it was.
--
SELECT es_append('s-1', 0, 'T', '{}');
SELECT es_append('u-1', NULL, 'T', '{}', '{}', 'b81bc81b-dead-4e5d-abff-90865d1e13b1');
SELECT regress.store_digest() AS before \gset

-- 22004: a NULL argument, except expected_version, metadata and event_id
SELECT regress.err($$SELECT es_append(NULL, NULL, 'T', '{}')$$);
SELECT regress.err($$SELECT es_append('s-1', NULL, NULL, '{}')$$);
SELECT regress.err($$SELECT es_append('s-1', NULL, 'T', NULL)$$);
SELECT regress.err($$SELECT es_append(NULL, NULL, '[{"type": "T", "data": {}}]'::jsonb)$$);
SELECT regress.err($$SELECT es_append('s-1', NULL, NULL::jsonb)$$);
SELECT regress.err($$SELECT * FROM es_load(NULL)$$);
SELECT regress.err($$SELECT * FROM es_load('s-1', NULL)$$);
SELECT regress.err($$SELECT es_stream_version(NULL)$$);
SELECT regress.err($$SELECT * FROM es_read_all(NULL)$$);
SELECT regress.err($$SELECT * FROM es_read_all(0, NULL)$$);
SELECT regress.err($$SELECT * FROM es_read_category(NULL)$$);
SELECT regress.err($$SELECT * FROM es_read_category('s', NULL)$$);
SELECT regress.err($$SELECT * FROM es_read_category('s', 0, NULL)$$);

-- 22023: empty or over-long stream_id or event_type
SELECT regress.err($$SELECT es_append('', NULL, 'T', '{}')$$);
SELECT regress.err($$SELECT es_append(repeat('x', 256), NULL, 'T', '{}')$$);
SELECT regress.err($$SELECT es_append(repeat('é', 128), NULL, 'T', '{}')$$);
SELECT regress.err($$SELECT es_append('s-1', NULL, '', '{}')$$);
SELECT regress.err($$SELECT es_append('s-1', NULL, repeat('T', 256), '{}')$$);
SELECT regress.err($$SELECT es_append('', NULL, '[{"type": "T", "data": {}}]'::jsonb)$$);
SELECT regress.err($$SELECT es_append('s-1', NULL, '[{"type": "", "data": {}}]'::jsonb)$$);
SELECT regress.err($$SELECT es_append('s-1', NULL, jsonb_build_array(jsonb_build_object('type', repeat('T', 256), 'data', '{}'::jsonb)))$$);
SELECT regress.err($$SELECT * FROM es_load('')$$);
SELECT regress.err($$SELECT es_stream_version(repeat('x', 256))$$);

-- 22023: data or metadata not a JSON object
SELECT regress.err($$SELECT es_append('s-1', NULL, 'T', '[1, 2]')$$);
SELECT regress.err($$SELECT es_append('s-1', NULL, 'T', '"text"')$$);
SELECT regress.err($$SELECT es_append('s-1', NULL, 'T', '42')$$);
SELECT regress.err($$SELECT es_append('s-1', NULL, 'T', 'null')$$);
SELECT regress.err($$SELECT es_append('s-1', NULL, 'T', '{}', '[]')$$);
SELECT regress.err($$SELECT es_append('s-1', NULL, 'T', '{}', 'true')$$);

-- 22023: malformed batch, unknown key, empty batch
SELECT regress.err($$SELECT es_append('s-1', NULL, '[]'::jsonb)$$);
SELECT regress.err($$SELECT es_append('s-1', NULL, '{"type": "T", "data": {}}'::jsonb)$$);
SELECT regress.err($$SELECT es_append('s-1', NULL, '"T"'::jsonb)$$);
SELECT regress.err($$SELECT es_append('s-1', NULL, '[1]'::jsonb)$$);
SELECT regress.err($$SELECT es_append('s-1', NULL, '[[]]'::jsonb)$$);
SELECT regress.err($$SELECT es_append('s-1', NULL, '[{"data": {}}]'::jsonb)$$);
SELECT regress.err($$SELECT es_append('s-1', NULL, '[{"type": "T"}]'::jsonb)$$);
SELECT regress.err($$SELECT es_append('s-1', NULL, '[{"type": 7, "data": {}}]'::jsonb)$$);
SELECT regress.err($$SELECT es_append('s-1', NULL, '[{"type": null, "data": {}}]'::jsonb)$$);
SELECT regress.err($$SELECT es_append('s-1', NULL, '[{"type": "T", "data": [1]}]'::jsonb)$$);
SELECT regress.err($$SELECT es_append('s-1', NULL, '[{"type": "T", "data": null}]'::jsonb)$$);
SELECT regress.err($$SELECT es_append('s-1', NULL, '[{"type": "T", "data": {}, "metadata": "m"}]'::jsonb)$$);
SELECT regress.err($$SELECT es_append('s-1', NULL, '[{"type": "T", "data": {}, "id": "not-a-uuid"}]'::jsonb)$$);
SELECT regress.err($$SELECT es_append('s-1', NULL, '[{"type": "T", "data": {}, "id": 12}]'::jsonb)$$);
SELECT regress.err($$SELECT es_append('s-1', NULL, '[{"type": "T", "data": {}, "id": "a81bc81b-dead-4e5d-abff-90865d1e13b"}]'::jsonb)$$);
SELECT regress.err($$SELECT es_append('s-1', NULL, '[{"type": "T", "data": {}, "Type": "x"}]'::jsonb)$$);
SELECT regress.err($$SELECT es_append('s-1', NULL, jsonb_build_array(jsonb_build_object('type', 'T', 'data', '{}'::jsonb, repeat('k', 100), 1)))$$);
SELECT regress.err($$SELECT es_append('s-1', NULL, jsonb_build_array(jsonb_build_object('type', 'T', 'data', '{}'::jsonb, 'id', repeat('é', 100))))$$);
SELECT regress.err($$SELECT es_append('s-1', NULL, '[{"type": "T", "data": {}}, {"type": "T", "data": {}, "extra": 1}]'::jsonb)$$);
SELECT regress.err($$SELECT es_append('s-1', NULL, '[{"type": "T", "data": {}, "id": "a81bc81b-dead-4e5d-abff-90865d1e13b1"}, {"type": "T", "data": {}, "id": "A81BC81B-DEAD-4E5D-ABFF-90865D1E13B1"}]'::jsonb)$$);

-- a batch of 100,000 events: the DETAIL names the event, numbered from 1
-- (jsonb_set counts from 0: element 73411 is event 73412)
CREATE TEMP TABLE big AS
SELECT jsonb_agg(jsonb_build_object('type', 'T', 'data', jsonb_build_object('g', g),
                                    'id', md5(g::text)::uuid) ORDER BY g) AS b
  FROM generate_series(1, 100000) g;
SELECT regress.err($$SELECT es_append('s-1', NULL, jsonb_set(b, '{73411}', '"T"')) FROM big$$);
SELECT regress.err($$SELECT es_append('s-1', NULL, jsonb_set(b, '{73411,type}', '""')) FROM big$$);
SELECT regress.err($$SELECT es_append('s-1', NULL, jsonb_set(b, '{73411,type}', to_jsonb(repeat('T', 256)))) FROM big$$);
SELECT regress.err($$SELECT es_append('s-1', NULL, jsonb_set(b, '{73411}', '{"type": "T"}')) FROM big$$);
SELECT regress.err($$SELECT es_append('s-1', NULL, jsonb_set(b, '{73411,metadata}', '[1]')) FROM big$$);
SELECT regress.err($$SELECT es_append('s-1', NULL, jsonb_set(b, '{73411,id}', '"not-a-uuid"')) FROM big$$);
SELECT regress.err($$SELECT es_append('s-1', NULL, jsonb_set(b, '{73411,extra}', '1')) FROM big$$);
-- event 73412 with the id of event 5
SELECT regress.err($$SELECT es_append('s-1', NULL, jsonb_set(b, '{73411,id}', b->4->'id')) FROM big$$);
-- 23505: event 73412 with an id stored elsewhere
SELECT regress.err($$SELECT es_append('s-1', NULL, jsonb_set(b, '{73411,id}', '"b81bc81b-dead-4e5d-abff-90865d1e13b1"')) FROM big$$);

-- 22023: expected_version < -1
SELECT regress.err($$SELECT es_append('s-1', -2, 'T', '{}')$$);
SELECT regress.err($$SELECT es_append('s-1', -9223372036854775808, '[{"type": "T", "data": {}}]'::jsonb)$$);

-- 22023: read arguments out of range
SELECT regress.err($$SELECT * FROM es_load('s-1', 0)$$);
SELECT regress.err($$SELECT * FROM es_read_all(-1)$$);
SELECT regress.err($$SELECT * FROM es_read_all(0, -1)$$);
SELECT regress.err($$SELECT * FROM es_read_category('account-1')$$);

-- 40001: wrong expected version, with the constraint name es_wrong_expected_version
SELECT regress.err($$SELECT es_append('s-1', 0, 'T', '{}')$$);
SELECT regress.err($$SELECT es_append('s-1', 2, 'T', '{}')$$);
SELECT regress.err($$SELECT es_append('s-2', -1, 'T', '{}')$$);
SELECT regress.err($$SELECT es_append('s-2', 1, '[{"type": "T", "data": {}}]'::jsonb)$$);

-- 55000: UPDATE / DELETE / TRUNCATE of stored events, even as the owner
SELECT regress.err($$UPDATE es_events SET data = '{}'$$);
SELECT regress.err($$UPDATE es_events SET data = '{}' WHERE false$$);
SELECT regress.err($$DELETE FROM es_events$$);
SELECT regress.err($$DELETE FROM es_events WHERE stream_id = 'no-such-stream'$$);
SELECT regress.err($$TRUNCATE es_events$$);
SET session_replication_role = replica;
SELECT regress.err($$DELETE FROM es_events$$);
RESET session_replication_role;

-- 23505: an event id reused elsewhere
SELECT regress.err($$SELECT es_append('u-2', NULL, 'T', '{}', '{}', 'b81bc81b-dead-4e5d-abff-90865d1e13b1')$$);

-- 25006: appending in a read-only transaction
BEGIN READ ONLY;
SELECT regress.err($$SELECT es_append('ro-1', NULL, 'T', '{}')$$);
ROLLBACK;

-- 55000: the position sequence must keep CACHE 1
ALTER SEQUENCE es_events_global_position_seq CACHE 10;
SELECT regress.err($$SELECT * FROM es_read_all()$$);
ALTER SEQUENCE es_events_global_position_seq CACHE 1;

-- nothing above changed the store
SELECT regress.store_digest() = :'before' AS unchanged;
