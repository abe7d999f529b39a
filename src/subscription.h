/*-------------------------------------------------------------------------
 *
 * subscription.h
 *	  What subscription.c and subscription_read.c share.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ES_SUBSCRIPTION_H
#define ES_SUBSCRIPTION_H

#include "postgres.h"

#include "fmgr.h"

/* A subscription's definition, and one member's checkpoint. */
typedef struct EsSubscription
{
	char	   *name;
	text	   *category;		/* NULL: every category */
	int			ntypes;			/* -1: every event type */
	char	  **types;			/* sorted */
	int32		group_size;
	Oid			owner;
	int32		member;			/* -1: none loaded */
	bool		has_member;
	int64		position;		/* the member's checkpoint (last ack) */
	int64		scanned_to;		/* nothing of the member's in (position, scanned_to] */
	int32		epoch;			/* moves on with every reset and resize */
} EsSubscription;

/* the statements run on every read and acknowledgement, kept prepared */
typedef enum EsSubscriptionPlan
{
	ES_SUB_PLAN_LOAD,			/* definition and a member's checkpoint */
	ES_SUB_PLAN_LOAD_SHARE,		/* the same, the definition locked FOR SHARE */
	ES_SUB_PLAN_ACK,			/* move a checkpoint forward, checked */
	ES_SUB_PLAN_SCANNED,		/* remember how far a member has nothing */
	ES_SUB_PLAN_MEMBERS,		/* every member's checkpoint */
	ES_SUB_NPLANS
} EsSubscriptionPlan;

extern char *es_subscription_name_arg(FunctionCallInfo fcinfo, int argno);
extern void es_subscription_load(const char *name, int32 member, bool for_share,
								 bool check_owner, EsSubscription *s);
extern EsSubscription *es_subscription_load_members(const EsSubscription *def, int *n);
extern void es_check_member_arg(const EsSubscription *s, int32 member);
extern void es_check_group_size(int32 group_size);
extern bool es_subscription_matches_type(const EsSubscription *s, const char *type);
extern int32 es_stream_member(const char *stream, int len, int32 group_size);
extern uint64 es_subscription_execute(EsSubscriptionPlan which, Datum *values,
									  const char *nulls);
extern bool es_lease_try(const char *name, int32 member);
extern void es_lease_take(const char *name, int32 member);

#endif							/* ES_SUBSCRIPTION_H */
