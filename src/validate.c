/*-------------------------------------------------------------------------
 *
 * validate.c
 *	  Argument checks shared by the SQL-callable functions.
 *
 * The SQL functions are not STRICT: a NULL where the contract gives NULL no
 * meaning must raise 22004 rather than silently return NULL.  Every check
 * here raises an error with the contract's SQLSTATE and a DETAIL or HINT
 * that says what to change.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "event_sourcing.h"

/*
 * es_check_not_null
 *		Raise 22004 when argument argno (0-based) is NULL.
 */
void
es_check_not_null(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", argname)));
}

/*
 * es_check_name
 *		A stream id or event type: non-empty, at most ES_MAX_NAME_BYTES bytes.
 */
void
es_check_name(const char *what, int len)
{
	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", what)));
	if (len > ES_MAX_NAME_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is too long", what),
				 errdetail("The %s is %d bytes long; the limit is %d bytes.",
						   what, len, ES_MAX_NAME_BYTES)));
}

/*
 * es_check_event_type
 *		An event type given by a user: es_check_name, and not one of the
 *		extension's own ("$StreamDeleted", "$EventRedacted"): every type that
 *		starts with '$' is reserved, so no user event can pass for a
 *		tombstone or a redaction notice.
 */
void
es_check_event_type(const char *what, text *type)
{
	es_check_name(what, VARSIZE_ANY_EXHDR(type));
	if (ES_IS_SYSTEM_TYPE(VARDATA_ANY(type)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s \"%s\" is reserved", what, text_to_cstring(type)),
				 errdetail("Event types that start with \"$\" are the extension's own system events."),
				 errhint("Choose a type that does not start with \"$\".")));
}

/*
 * es_check_category
 *		A category (es_define_aggregate, es_set_retention): a name without
 *		'-', since a stream's category is the part of its id before the
 *		first '-'.
 */
void
es_check_category(text *category)
{
	es_check_name("category", VARSIZE_ANY_EXHDR(category));
	if (memchr(VARDATA_ANY(category), '-', VARSIZE_ANY_EXHDR(category)) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a category cannot contain \"-\""),
				 errdetail("The category of a stream is the part of its stream_id before the first \"-\".")));
}

/*
 * es_check_timeout
 *		timeout_ms of the waiting functions: not negative (22023).
 */
void
es_check_timeout(int32 timeout_ms)
{
	if (timeout_ms < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout_ms must not be negative"),
				 errdetail("timeout_ms was %d.", timeout_ms),
				 errhint("Use 0 to check without waiting.")));
}

/*
 * es_check_read_committed
 *		A function that waits for other transactions' commits cannot run
 *		under a transaction snapshot, which would never show them (0A000).
 */
void
es_check_read_committed(const char *fname, const char *waits_for)
{
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s cannot run in a REPEATABLE READ or SERIALIZABLE transaction", fname),
				 errdetail("Its snapshot would never show %s.", waits_for),
				 errhint("Call it in a READ COMMITTED transaction, or outside a transaction block.")));
}

/*
 * es_check_type_array
 *		event_types of a projection or subscription: NULL is the caller's
 *		(every type); otherwise a non-empty one-dimensional array of valid
 *		type names without NULLs.  Returns its elements.
 */
Datum *
es_check_type_array(ArrayType *arr, const char *null_hint, int *n)
{
	Datum	   *elems;
	bool	   *nulls;

	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event_types must be a one-dimensional array")));
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, n);
	if (*n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event_types must not be empty"),
				 errhint("%s", null_hint)));
	for (int i = 0; i < *n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("event_types must not contain null")));
		es_check_name("event type", VARSIZE_ANY_EXHDR(DatumGetTextPP(elems[i])));
	}
	return elems;
}

/*
 * es_check_stream_id
 *		es_check_name for a stream id given as text.
 */
void
es_check_stream_id(text *stream_id)
{
	es_check_name("stream_id", VARSIZE_ANY_EXHDR(stream_id));
}

/*
 * es_jsonb_value_kind
 *		"object", "array", "string", ... of a JSON value (a scalar, or a
 *		container taken from another one), for error details.
 */
const char *
es_jsonb_value_kind(const JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return "null";
		case jbvString:
			return "string";
		case jbvNumeric:
			return "number";
		case jbvBool:
			return "boolean";
		case jbvBinary:
			if (JsonContainerIsObject(v->val.binary.data))
				return "object";
			if (JsonContainerIsArray(v->val.binary.data))
				return "array";
			break;
		default:
			break;
	}
	return "unknown";
}

/*
 * es_jsonb_kind
 *		"object", "array", "string", ... of a jsonb datum, for error details.
 */
const char *
es_jsonb_kind(Jsonb *jb)
{
	JsonbValue	v;

	/* a scalar is stored as a one-element array: look inside it */
	if (!JsonbExtractScalar(&jb->root, &v))
	{
		v.type = jbvBinary;
		v.val.binary.data = &jb->root;
		v.val.binary.len = VARSIZE(jb) - VARHDRSZ;
	}
	return es_jsonb_value_kind(&v);
}

/*
 * es_check_object
 *		data and metadata must be JSON objects.
 */
void
es_check_object(Jsonb *jb, const char *what)
{
	if (!JB_ROOT_IS_OBJECT(jb))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a JSON object", what),
				 errdetail("The value given is a JSON %s.", es_jsonb_kind(jb)),
				 errhint("Wrap the value in an object, for example {\"value\": ...}.")));
}

/*
 * es_category_len
 *		Length of the category of a stream id: the bytes before the first '-'
 *		(the whole id when it has none).
 */
int
es_category_len(text *stream_id)
{
	const char *p = VARDATA_ANY(stream_id);
	const char *dash = memchr(p, '-', VARSIZE_ANY_EXHDR(stream_id));

	return dash ? (int) (dash - p) : (int) VARSIZE_ANY_EXHDR(stream_id);
}
