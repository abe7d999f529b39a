/*-------------------------------------------------------------------------
 *
 * batch.c
 *	  Parsing the batch form of es_append: a JSON array of events.
 *
 * Every element is checked before anything is appended, and a malformed
 * batch is 22023 with a DETAIL naming the element (numbered from 1) and,
 * for a value of the wrong kind, the kind given, so a client can find the
 * offending event in a batch of 100,000.
 *
 * Parsing is O(n), checks for interrupts once per event (a batch of a
 * million events can be cancelled while it is validated), and allocates
 * per event only what the row needs: its data, its metadata when given, and
 * its type when it differs from the previous event's.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/uuid.h"

#include "event_sourcing.h"

/*
 * es_empty_object
 *		The jsonb value {}.
 */
Jsonb *
es_empty_object(void)
{
	JsonbValue	v;

	v.type = jbvObject;
	v.val.object.nPairs = 0;
	v.val.object.pairs = NULL;
	return JsonbValueToJsonb(&v);
}

/*
 * The DETAIL of every error about one event of a batch.  Events are numbered
 * from 1, the first element of the array being event 1, and the DETAIL says
 * so, so that the event can be found in a batch of 100,000.
 */
#define EVENT_DETAIL "The problem is in event %d of the batch (numbered from 1)"

/*
 * batch_error
 *		Report a malformed batch: 22023 with the event's number.
 */
static void
batch_error(int i, const char *msg, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("malformed event batch: %s", msg),
			 errdetail(EVENT_DETAIL ".", i + 1),
			 hint ? errhint("%s", hint) : 0));
}

/*
 * batch_kind_error
 *		Report a malformed batch where a value of the wrong JSON kind was
 *		given: the event itself (key NULL) or the value of one of its keys.
 *		The DETAIL names the event and the kind that was given.
 */
static void
batch_kind_error(int i, const char *key, const JsonbValue *v,
				 const char *msg, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("malformed event batch: %s", msg),
			 key ? errdetail(EVENT_DETAIL ", whose \"%s\" is a JSON %s.",
							 i + 1, key, es_jsonb_value_kind(v)) :
			 errdetail(EVENT_DETAIL ", a JSON %s.", i + 1, es_jsonb_value_kind(v)),
			 hint ? errhint("%s", hint) : 0));
}

/*
 * clip
 *		At most 64 bytes of a string from the input, for an error message;
 *		a longer one is cut at a character boundary and ends in "...".
 */
static char *
clip(const char *s, int len)
{
	int			keep;

	if (len <= 64)
		return pnstrdup(s, len);
	keep = pg_mbcliplen(s, len, 61);
	return psprintf("%.*s...", keep, s);
}

/*
 * hex_value
 *		Value of one hexadecimal digit, -1 if c is not one.
 */
static int
hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * parse_uuid
 *		Parse a UUID given as a JSON string: 32 hex digits, optionally with
 *		the standard hyphens and braces.  Returns false when malformed
 *		(uuid_in would raise 22P02; a malformed batch is 22023).
 */
static bool
parse_uuid(const char *s, int len, pg_uuid_t *uuid)
{
	int			pos = 0;
	int			digits = 0;
	bool		braces = (len > 0 && s[0] == '{');

	if (braces)
	{
		if (s[len - 1] != '}')
			return false;
		pos = 1;
		len--;
	}
	while (pos < len && digits < 32)
	{
		int			hi,
					lo;

		if (s[pos] == '-' && digits > 0 && digits % 4 == 0 && pos + 1 < len && s[pos + 1] != '-')
		{
			pos++;
			continue;
		}
		if (pos + 1 >= len)
			return false;
		hi = hex_value(s[pos]);
		lo = hex_value(s[pos + 1]);
		if (hi < 0 || lo < 0)
			return false;
		uuid->data[digits / 2] = (unsigned char) (hi << 4 | lo);
		digits += 2;
		pos += 2;
	}
	return digits == 32 && pos == len;
}

/*
 * is_object_value
 *		A JSON value taken from a container: is it an object?
 */
static bool
is_object_value(JsonbValue *v)
{
	return v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data);
}

/*
 * key_is
 *		Is the object key k the given name?  (No copy of the key: a batch of
 *		100,000 events has 300,000 of them.)
 */
static inline bool
key_is(const JsonbValue *k, const char *name, int namelen)
{
	return k->val.string.len == namelen &&
		memcmp(k->val.string.val, name, namelen) == 0;
}

#define KEY_IS(k, name) key_is((k), (name), sizeof(name) - 1)

/*
 * parse_type
 *		The "type" of event i: a non-empty string of at most
 *		ES_MAX_NAME_BYTES bytes, the same checks as for the event_type of the
 *		single-event form, plus the event's number.  Events of a batch
 *		mostly share their type: the previous event's text is reused when it
 *		is the same.
 */
static text *
parse_type(JsonbValue *v, int i, const EsEventInput *prev)
{
	int			len;

	if (v->type != jbvString)
		batch_kind_error(i, "type", v, "\"type\" must be a string", NULL);
	len = v->val.string.len;
	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event_type must not be empty"),
				 errdetail(EVENT_DETAIL ".", i + 1)));
	if (len > ES_MAX_NAME_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event_type is too long"),
				 errdetail(EVENT_DETAIL ", whose \"type\" is %d bytes long; the limit is %d bytes.",
						   i + 1, len, ES_MAX_NAME_BYTES)));
	if (ES_IS_SYSTEM_TYPE(v->val.string.val))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event_type \"%.*s\" is reserved", len, v->val.string.val),
				 errdetail(EVENT_DETAIL "; event types that start with \"$\" are the extension's own system events.",
						   i + 1),
				 errhint("Choose a type that does not start with \"$\".")));
	if (prev != NULL && (int) VARSIZE_ANY_EXHDR(prev->type) == len &&
		memcmp(VARDATA_ANY(prev->type), v->val.string.val, len) == 0)
		return prev->type;
	return cstring_to_text_with_len(v->val.string.val, len);
}

/*
 * parse_event
 *		Event i of a batch: {"type", "data", "metadata"?, "id"?}.
 *
 * JSON null for metadata or id means absent, as SQL NULL does for the
 * single-event form; absent metadata is 'empty', shared by the events of
 * the batch.  prev is the previous event (NULL for the first).
 */
static void
parse_event(JsonbValue *elem, int i, EsEventInput *ev,
			const EsEventInput *prev, Jsonb *empty)
{
	JsonbIterator *it;
	JsonbIteratorToken tok;
	JsonbValue	k;
	JsonbValue	v;
	bool		have_type = false;
	bool		have_data = false;

	if (!is_object_value(elem))
		batch_kind_error(i, NULL, elem, "an event must be a JSON object",
						 "Each element is an object such as {\"type\": \"Deposited\", \"data\": {\"amount\": 10}}.");

	ev->metadata = NULL;
	ev->id_given = false;

	it = JsonbIteratorInit(elem->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		if (tok != WJB_KEY)
			continue;
		tok = JsonbIteratorNext(&it, &v, true);
		Assert(tok == WJB_VALUE);

		if (KEY_IS(&k, "type"))
		{
			ev->type = parse_type(&v, i, prev);
			have_type = true;
		}
		else if (KEY_IS(&k, "data"))
		{
			if (!is_object_value(&v))
				batch_kind_error(i, "data", &v, "\"data\" must be a JSON object",
								 "Give \"data\": {} for an event without data.");
			ev->data = JsonbValueToJsonb(&v);
			have_data = true;
		}
		else if (KEY_IS(&k, "metadata"))
		{
			if (v.type == jbvNull)
				continue;
			if (!is_object_value(&v))
				batch_kind_error(i, "metadata", &v, "\"metadata\" must be a JSON object",
								 "Give an object, or leave \"metadata\" out for {}.");
			ev->metadata = JsonbValueToJsonb(&v);
		}
		else if (KEY_IS(&k, "id"))
		{
			if (v.type == jbvNull)
				continue;
			if (v.type != jbvString)
				batch_kind_error(i, "id", &v, "\"id\" must be a UUID string", NULL);
			if (!parse_uuid(v.val.string.val, v.val.string.len, &ev->id))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("malformed event batch: \"id\" must be a UUID string"),
						 errdetail(EVENT_DETAIL ", whose \"id\" \"%s\" is not a UUID.",
								   i + 1, clip(v.val.string.val, v.val.string.len))));
			ev->id_given = true;
		}
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("malformed event batch: unknown key \"%s\"",
							clip(k.val.string.val, k.val.string.len)),
					 errdetail(EVENT_DETAIL ".", i + 1),
					 errhint("The keys of an event are \"type\", \"data\", \"metadata\" and \"id\".")));
	}

	if (!have_type)
		batch_error(i, "\"type\" is missing", NULL);
	if (!have_data)
		batch_error(i, "\"data\" is missing",
					"Give \"data\": {} for an event without data.");
	if (ev->metadata == NULL)
		ev->metadata = empty;
}

/*
 * check_duplicate_ids
 *		The same id twice in one batch is a malformed batch; the error names
 *		both events.
 *
 * An open-addressing hash table of event numbers, sized once for all the
 * ids given: O(n), one allocation, and interruptible, where a sort of the
 * ids would be O(n log n) in one uninterruptible call.
 */
static void
check_duplicate_ids(EsEventInput *ev, int n)
{
	int			m = 0;
	Size		size = 1;
	int32	   *slots;

	for (int i = 0; i < n; i++)
		if (ev[i].id_given)
			m++;
	if (m < 2)
		return;
	while (size < (Size) m * 2)
		size <<= 1;
	slots = MemoryContextAllocHuge(CurrentMemoryContext, size * sizeof(int32));
	memset(slots, 0xff, size * sizeof(int32));	/* every slot -1: empty */

	for (int i = 0; i < n; i++)
	{
		Size		h;

		if (!ev[i].id_given)
			continue;
		CHECK_FOR_INTERRUPTS();
		h = hash_bytes(ev[i].id.data, UUID_LEN) & (size - 1);
		while (slots[h] >= 0)
		{
			int			j = slots[h];

			if (memcmp(&ev[j].id, &ev[i].id, UUID_LEN) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("malformed event batch: event id %s appears more than once",
								DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(&ev[i].id)))),
						 errdetail("Events %d and %d of the batch (numbered from 1) have this id.",
								   j + 1, i + 1),
						 errhint("Every event of a batch needs its own id.")));
			h = (h + 1) & (size - 1);
		}
		slots[h] = i;
	}
	pfree(slots);
}

/*
 * es_parse_batch
 *		Validate the batch form of es_append, a non-empty JSON array of
 *		{"type", "data", "metadata"?, "id"?}, into *n events.
 *
 * O(n) and checks for interrupts once per event: a batch of a million
 * events can be cancelled while it is parsed.
 */
EsEventInput *
es_parse_batch(Jsonb *events, int *n)
{
	JsonbIterator *it;
	JsonbIteratorToken tok;
	JsonbValue	v;
	EsEventInput *ev;
	Jsonb	   *empty;
	int			i = 0;

	if (!JB_ROOT_IS_ARRAY(events) || JB_ROOT_IS_SCALAR(events))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("events must be a JSON array"),
				 errdetail("The value given is a JSON %s.", es_jsonb_kind(events)),
				 errhint("Pass [{\"type\": ..., \"data\": {...}}, ...], or use the single-event form of es_append.")));
	*n = JB_ROOT_COUNT(events);
	if (*n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("events must not be an empty array"),
				 errhint("An append stores at least one event.")));

	/* huge: an array of millions of {} is a valid jsonb value */
	ev = MemoryContextAllocHuge(CurrentMemoryContext, sizeof(EsEventInput) * *n);
	empty = es_empty_object();
	it = JsonbIteratorInit(&events->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok != WJB_ELEM)
			continue;
		CHECK_FOR_INTERRUPTS();
		parse_event(&v, i, &ev[i], i > 0 ? &ev[i - 1] : NULL, empty);
		i++;
	}
	Assert(i == *n);
	check_duplicate_ids(ev, *n);
	return ev;
}
