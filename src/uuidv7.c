/*-------------------------------------------------------------------------
 *
 * uuidv7.c
 *	  Time-ordered event ids (UUID version 7, RFC 9562).
 *
 * A generated event id begins with the Unix time in milliseconds, followed
 * by a 12-bit fraction of the millisecond (RFC 9562, section 6.2, method 3),
 * so ids generated later sort later and the unique index on event_id grows
 * at its right edge like the position index.  Within one backend the ids are
 * strictly increasing even when the clock stands still or steps back.  The
 * remaining 62 bits are random, from pg_strong_random, drawn 512 bytes at a
 * time.
 *
 * The events of a command sent with a command id (es_execute) get ids
 * derived from it instead: UUID version 3 (RFC 9562, section 5.3) with the
 * command id as namespace and the event's number in the command (0, 1, ...,
 * in decimal) as name, so a resent command produces the same ids and any
 * client can compute them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/md5.h"
#include "datatype/timestamp.h"
#include "utils/timestamp.h"

#include "event_sourcing.h"

/* (milliseconds << 12 | sub-millisecond fraction) of the last id made here */
static uint64 last_time_field = 0;

/*
 * Random bytes are drawn from pg_strong_random in blocks: one call per id
 * costs more than the rest of an append of a small event.
 */
#define RANDOM_BLOCK 512
static unsigned char random_block[RANDOM_BLOCK];
static int	random_used = RANDOM_BLOCK;

/*
 * random_bytes
 *		Copy n (<= RANDOM_BLOCK) strong random bytes into buf.
 */
static void
random_bytes(unsigned char *buf, int n)
{
	if (random_used + n > RANDOM_BLOCK)
	{
		if (!pg_strong_random(random_block, RANDOM_BLOCK))
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not generate random values for an event id")));
		random_used = 0;
	}
	memcpy(buf, random_block + random_used, n);
	/* never hand the same bytes out twice */
	memset(random_block + random_used, 0, n);
	random_used += n;
}

/*
 * es_uuidv7
 *		Fill *uuid with a new version 7 UUID.
 */
void
es_uuidv7(pg_uuid_t *uuid)
{
	TimestampTz now = GetCurrentTimestamp();
	int64		unix_us;
	uint64		ms;
	uint64		frac;
	uint64		field;
	unsigned char *b = uuid->data;

	unix_us = now + (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * USECS_PER_SEC;
	if (unix_us < 0)
		unix_us = 0;
	ms = (uint64) unix_us / 1000;
	frac = (((uint64) unix_us % 1000) << 12) / 1000;	/* 0 .. 4095 */
	field = (ms << 12) | frac;

	/* keep ids from one backend strictly increasing */
	if (field <= last_time_field)
		field = last_time_field + 1;
	last_time_field = field;

	random_bytes(b + 8, 8);

	ms = field >> 12;
	frac = field & 0x0FFF;
	b[0] = (unsigned char) (ms >> 40);
	b[1] = (unsigned char) (ms >> 32);
	b[2] = (unsigned char) (ms >> 24);
	b[3] = (unsigned char) (ms >> 16);
	b[4] = (unsigned char) (ms >> 8);
	b[5] = (unsigned char) ms;
	b[6] = (unsigned char) (0x70 | (frac >> 8));	/* version 7 */
	b[7] = (unsigned char) (frac & 0xFF);
	b[8] = (unsigned char) (0x80 | (b[8] & 0x3F));	/* RFC 9562 variant */
}

/*
 * es_uuid_for_command
 *		The id of event i of the command with this id: UUID version 3 of
 *		name i (decimal) in namespace command_id.
 */
void
es_uuid_for_command(const pg_uuid_t *command_id, int i, pg_uuid_t *out)
{
	unsigned char buf[UUID_LEN + 16];
	int			len;
	const char *errstr = NULL;

	memcpy(buf, command_id->data, UUID_LEN);
	len = snprintf((char *) buf + UUID_LEN, 16, "%d", i);
#if PG_VERSION_NUM >= 150000
	if (!pg_md5_binary(buf, UUID_LEN + len, out->data, &errstr))
#else
	if (!pg_md5_binary(buf, UUID_LEN + len, out->data))
#endif
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not derive an event id from the command id: %s",
						errstr ? errstr : "MD5 failed")));
	out->data[6] = (out->data[6] & 0x0f) | 0x30;	/* version 3 */
	out->data[8] = (out->data[8] & 0x3f) | 0x80;	/* RFC 9562 variant */
}
