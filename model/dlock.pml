/*
 * dlock.pml: the lock protocol of sql/schema.sql as the code calls it, for SPIN: dlock_acquire_v3
 * (its fast path, then dlock_acquire_v2 with its helpers dlock_completed_slot_v1,
 * dlock_claim_lock_v1 and dlock_claim_slot_v1); dlock_release_v4 (dlock_release_v3, then
 * dlock_release_v2, then the reset check); dlock_abandon_v2; dlock_renew_all_v1;
 * dlock_fence_is_current_v1; the operator's release (forced, or -DOP_FENCED) and slot reset
 * (-DMAXRESET). -DPROTO_V2 leaves version 3 out (the calls of the release before it).
 *
 * Grain: every SQL statement of a server function is one atomic step; a function as a whole is
 * not atomic. Each call runs in one transaction (autocommit) under READ COMMITTED:
 *   - a plain SELECT sees the latest committed version of a row (plus its own changes);
 *   - a write (UPDATE, DELETE, SELECT ... FOR UPDATE) on a row another transaction has written
 *     and not yet committed waits for it, then evaluates its WHERE again on the row's newest
 *     committed version (PostgreSQL's EvalPlanQual recheck);
 *   - an INSERT ... ON CONFLICT waits on a conflicting uncommitted row, and then conflicts or
 *     not depending on whether that transaction committed; a value drawn in VALUES (nextval())
 *     is drawn before that wait;
 *   - sequences never roll back; written rows stay locked until commit or abort.
 * A call's transaction can be aborted mid-way (the client crashed, the server restarted), and the
 * reply of a committed call can be lost: the client then sends the same call again (or, for
 * acquire, gives up and abandons), as resources/database.py does.
 *
 * Time is the database clock, an integer `now` that only moves forward, one tick at a time,
 * up to TMAX; a lease of LEASE ticks is live while expires_at >= now. A holder "pauses" by not
 * being scheduled while the clock moves: any pause of any length up to the horizon happens.
 *
 * One lock (queue_locks row) with NSLOT slots. The job_logs rows are indexed by their grant's
 * fence: the protocol draws log_id together with the fence of the same grant, so the fence
 * names the row (slot-less loser rows and the abandon's own Exited row claim nothing and
 * conflict with nothing; they are not modelled).
 *
 * Buggy variants (each must give a counterexample; tests/test_model.py keeps them failing):
 *   BUG_RELEASE_NO_CHECK      release frees the row without its owner + fence check
 *   BUG_TAKEOVER_NO_EXPIRY    take-over without the expiry check
 *   BUG_RENEW_NO_CHECK        renewal without its owner + fence check
 *   BUG_FENCE_BEFORE_WAIT     a new row's fence drawn in VALUES, before the conflict is decided
 *   BUG_RELEASE_NOT_IDEMPOTENT  a release resent after a lost reply does not find its own ending
 *   BUG_ACQUIRE_NOT_IDEMPOTENT  an acquire resent after a lost reply does not find its own grant
 *   BUG_SLOT_BY_QUERY         once-per-slot by a check query instead of the unique index
 *   BUG_NO_TAKEOVER           a lapsed lease is never taken over (with -DLIVENESS: the waiter
 *                             waits forever behind a crashed holder)
 *   BUG_RELEASE_BLIND_TO_RESET  (with MAXRESET) a resent release finds only Completed as its own
 *                             ending (dlock_release_v3): after a reset it says 'lost'
 *   BUG_OPERATOR_FENCE_APART  (with -DOP_FENCED) the operator's release compares the fence in a
 *                             read of its own, before it locks the row
 */

#ifndef NH
#define NH 3            /* holders: each makes one hold (one owner token) */
#endif
#ifndef NSLOT
#define NSLOT 2         /* slots (schedule ticks / partitions) of the lock */
#endif
#ifndef TMAX
#define TMAX 4          /* the clock's horizon while holders run */
#endif
#ifndef LEASE
#define LEASE 1         /* lease length in ticks: renewed at t, lapsed at t + LEASE + 1 */
#endif
#ifndef MAXCRASH
#define MAXCRASH 2      /* holder crashes (process gone; its open transaction aborts) */
#endif
#ifndef MAXLOST
#define MAXLOST 2       /* replies lost after the commit */
#endif
#ifndef MAXREN
#define MAXREN 1        /* renewals per hold */
#endif
#ifndef MAXOP
#define MAXOP 1         /* operator's forced releases */
#endif
#ifndef MAXRESET
#define MAXRESET 0      /* operator's slot resets (dlock_reset_slot_v1): a Completed slot re-opened */
#endif
/* fences (and job_logs rows) the model has room for: fences 1..7 (wait conditions over the
   rows are written out for exactly these) */
#define MAXF 8

/* Liveness (-DLIVENESS, checked with weak fairness against the ltl formulas at the end): the last
   holder is a waiter (on_held="wait"): it has a slot of its own, never crashes, and sends its
   acquire again after every "held" (or an abandon) until it is granted. Every other holder runs
   as in the safety checks. The deadline of the real wait is left out: the claim is that a free
   lock is eventually granted to a waiter that keeps asking. */
#ifdef LIVENESS
#define WAITER NH
#define CAN_CRASH(me) ((me) < NH)
#else
#define WAITER 0
#define CAN_CRASH(me) ((me) <= NH)
#endif

/* Reachability witnesses: compiled with -DCOVER=n, reaching point n is reported as an error,
   which shows that the event is reachable (tests/test_model.py checks every one: the model is
   not vacuous). */
#ifndef COVER
#define COVER 0
#endif
#define COVERED(n) assert(COVER != n)

/* transaction ids: holders 1..NH, the operator, the end-of-run probe */
#define OPTX    (NH + 1)
#define PROBETX (NH + 2)
#define NTX     (NH + 3)
#define PROBE_OWNER (NH + 1)  /* owner tokens: holder n has n, the probes come after */

/* job_logs.status */
#define NONE  0
#define PROC  1
#define COMPL 2
#define FAIL  3
#define EXIT  4
#define RESET 5         /* a Completed row re-opened by the operator: claims the slot no more */
#define claims(st) ((st) == PROC || (st) == COMPL)   /* claims_slot (slot is never NULL here) */

/* call outcomes */
#define R_NONE     0
#define R_RELEASED 1
#define R_LOST     2
#define R_RENEWED  3
#define R_BUSY     4

byte now;               /* the database clock (clock_timestamp()) */
bool ended;             /* all holders are gone: the clock may jump past every lease */
byte seq;               /* queue_lock_fence_seq: the last value drawn */

/* queue_locks row: the latest committed version ... */
bool c_ex;  byte c_own; byte c_fen; byte c_exp;   /* exists, owner (0 = NULL), fence, expires_at */
/* ... and the uncommitted version of the transaction p_tx that holds the row lock (0: none) */
byte p_tx;  bool p_ex;  byte p_own; byte p_fen; byte p_exp;
/* log_id = fence of the grant while owner is not NULL (both drawn by one grant) */

/* job_logs rows, by the fence of their grant: committed status, uncommitted status and the
   transaction holding the row lock, the slot */
byte l_c[MAXF]; byte l_p[MAXF]; byte l_tx[MAXF]; byte l_slot[MAXF];

/* ghosts (bookkeeping for the properties; the protocol never reads them) */
bool lost[MAXF];        /* grant f was taken from its holder: take-over or operator */
byte lastgrant;         /* fence of the last committed grant */
byte txown[NTX];        /* owner token the transaction acts for */
bool hheld[NTX];        /* the holder believes it holds the lock (acquired, not yet released) */
bool inbody[NTX];       /* ... and its body runs (it may make a fenced write) */
byte hfen[NTX];         /* ... with this fence */
byte crashes, lostreplies, forced, resets;
#if MAXRESET > 0
byte ncompl[NSLOT + 1]; /* Completed rows committed per slot ... */
byte nreset[NSLOT + 1]; /* ... and resets committed per slot */
#endif
byte nfin;              /* holders finished or crashed */
bool opdone;
bool waiter_got;        /* the waiter (-DLIVENESS) was granted the lock */

#define R_EX(me)  (p_tx == me -> p_ex  : c_ex)
#define R_OWN(me) (p_tx == me -> p_own : c_own)
#define R_FEN(me) (p_tx == me -> p_fen : c_fen)
#define R_EXP(me) (p_tx == me -> p_exp : c_exp)
#define ROW_FREE_FOR(me) (p_tx == 0 || p_tx == me)          /* no other writer: no wait */
#define L_V(i, me) (l_tx[i] == me -> l_p[i] : l_c[i])
#define LOG_FREE_FOR(i, me) (l_tx[i] == 0 || l_tx[i] == me)

/* the row lock, taken by the first write of a transaction */
inline lock_row(me) {
    if
    :: p_tx != me -> p_tx = me; p_ex = c_ex; p_own = c_own; p_fen = c_fen; p_exp = c_exp
    :: else -> skip
    fi
}
inline lock_log(i, me) {
    if
    :: l_tx[i] != me -> l_tx[i] = me; l_p[i] = l_c[i]
    :: else -> skip
    fi
}

/* A write that waits: some row of slot s is being written by another transaction and claims
   the slot in its committed or its uncommitted version (the unique index makes an INSERT .. ON
   CONFLICT wait for that transaction). */
#define SLOT_W(n, s, me) (l_slot[n] == s && l_tx[n] != 0 && l_tx[n] != me && (claims(l_c[n]) || claims(l_p[n])))
#define SLOT_WAIT(s, me) (SLOT_W(1, s, me) || SLOT_W(2, s, me) || SLOT_W(3, s, me) || SLOT_W(4, s, me) || SLOT_W(5, s, me) || SLOT_W(6, s, me) || SLOT_W(7, s, me))
/* An UPDATE .. WHERE slot = s AND status = 'Processing' waits on a matching row another
   transaction is writing. */
#define PROC_W(n, s, me) (l_slot[n] == s && l_c[n] == PROC && l_tx[n] != 0 && l_tx[n] != me)
#define PROC_WAIT(s, me) (PROC_W(1, s, me) || PROC_W(2, s, me) || PROC_W(3, s, me) || PROC_W(4, s, me) || PROC_W(5, s, me) || PROC_W(6, s, me) || PROC_W(7, s, me))

/* A write by a holder that must only ever touch its own grant. */
#define OWN_GRANT(me) (R_EX(me) && R_OWN(me) == txown[me] && R_FEN(me) == hfen[me])

/* The invariants, on the committed state; checked after every commit and every reply. */
inline check_invariants() {
    /* at most one claiming (Processing or Completed) row per (lock, slot): so at most one
       Completed row per (lock, slot) */
    k = 1;
    do
    :: k <= NSLOT ->
        i = 1; j = 0;
        do
        :: i < MAXF -> if :: l_slot[i] == k && claims(l_c[i]) -> j++ :: else fi; i++
        :: else -> break
        od;
        assert(j <= 1);
        k++
    :: else -> break
    od;
    /* every Processing row belongs to the lock's current grant (owner and fence) */
    i = 1;
    do
    :: i < MAXF ->
        assert(l_c[i] != PROC || (c_ex && c_own != 0 && c_fen == i));
        i++
    :: else -> break
    od;
    /* at most one holder whose fence is current, and it is the row's owner */
    i = 1; j = 0;
    do
    :: i < NTX ->
        if
        :: hheld[i] && c_ex && c_own != 0 && hfen[i] == c_fen -> j++; assert(txown[i] == c_own)
        :: else
        fi;
        i++
    :: else -> break
    od;
    assert(j <= 1);
    /* A fenced write (INSERT INTO heartbeats .. WHERE dlock_fence_is_current_v1(queue, job,
       fence): SELECT EXISTS (.. q.fence = p_fence AND q.owner IS NOT NULL), one statement that
       reads the committed row) is accepted only from the current holder, and refused only to a
       holder that really lost its lease. Its answer can only change at a commit, so checking
       what it would answer for every holder in its body here, after every commit, checks a
       write at every instant it could be made, without a step of its own. */
    i = 1;
    do
    :: i <= NH ->
        if
        :: inbody[i] && c_ex && c_own != 0 && c_fen == hfen[i] ->
            assert(c_own == txown[i] && !lost[hfen[i]])
        :: inbody[i] && !(c_ex && c_own != 0 && c_fen == hfen[i]) ->
            assert(lost[hfen[i]]);
            COVERED(9)    /* a fenced write refused: LockLost raised in the body */
        :: else
        fi;
        i++
    :: else -> break
    od;
    i = 0; j = 0; k = 0
}

/* COMMIT of the call's transaction: the uncommitted versions become the committed ones. */
inline commit(me) {
    if
    :: p_tx == me ->
        if
        :: p_ex && p_own != 0 && (!c_ex || c_own == 0 || p_fen != c_fen) ->
            /* a grant: fences of one lock strictly increase */
            assert(p_fen > lastgrant); lastgrant = p_fen
        :: else
        fi;
        if
        :: c_ex && c_own != 0 && !(p_ex && p_own == c_own && p_fen == c_fen) && c_own != txown[me] ->
            lost[c_fen] = 1    /* its holder did not give it up: taken from it */
        :: else
        fi;
        c_ex = p_ex; c_own = p_own; c_fen = p_fen; c_exp = p_exp;
        p_tx = 0; p_ex = 0; p_own = 0; p_fen = 0; p_exp = 0
    :: else
    fi;
    i = 1;
    do
    :: i < MAXF ->
        if
        :: l_tx[i] == me ->
            /* a holder that lost its lease never writes Completed */
            assert(!(l_p[i] == COMPL && l_c[i] != COMPL && lost[i]));
#if MAXRESET > 0
            /* exactly once between resets: a slot completes again only after a reset */
            if
            :: l_p[i] == COMPL && l_c[i] != COMPL ->
                ncompl[l_slot[i]]++; assert(ncompl[l_slot[i]] <= nreset[l_slot[i]] + 1);
                if :: nreset[l_slot[i]] > 0 -> COVERED(21) :: else fi   /* a reset slot ran again */
            :: l_p[i] == RESET && l_c[i] != RESET ->
                assert(l_c[i] == COMPL); nreset[l_slot[i]]++
            :: else
            fi;
#endif
            l_c[i] = l_p[i]; l_tx[i] = 0; l_p[i] = 0
        :: else
        fi;
        i++
    :: else -> break
    od;
    i = 0;
    check_invariants()
}

/* ROLLBACK (the session died): uncommitted versions vanish, drawn sequence values do not. */
inline abort(me) {
    if
    :: p_tx == me -> p_tx = 0; p_ex = 0; p_own = 0; p_fen = 0; p_exp = 0
    :: else
    fi;
    i = 1;
    do
    :: i < MAXF -> if :: l_tx[i] == me -> l_tx[i] = 0; l_p[i] = 0 :: else fi; i++
    :: else -> break
    od;
    i = 0
}

/* The end of a call, one step: COMMIT, then the reply reaches the client or is lost (the client
   then sends the call again or gives up); or a crash inside the call (SIGKILL, a lost
   machine): the session dies, its transaction rolls back after having held its row locks, and
   the holder stops for good. The probe and the operator never crash or lose replies. */
inline end_call(me) {
    atomic {
        if
        :: CAN_CRASH(me) && crashes < MAXCRASH -> crashes++; abort(me); goto crashed
        :: true -> commit(me);
            if
            :: delivered = 1
            :: me <= NH && lostreplies < MAXLOST -> lostreplies++; delivered = 0
            fi
        fi;
        /* the call is over: its scratch variables are dead (reset so equal states match) */
        vex = 0; vown = 0; vfen = 0; vexp = 0; c = 0; att = 0; nf = 0; found = 0; ins = 0; k = 0
    }
}

/* SELECT acquired, fence, ... FROM dlock_acquire_v2(queue, job, owner, app, run, slot, lease, ...)
   In: me, s (slot). Out: acq, f, delivered. */
inline acquire(me) {
#ifndef PROTO_V2
    /* dlock_acquire_v3's fast path (migration 0011), tried first; everything it does not decide
       goes to dlock_acquire_v2 below, in the same transaction.
       v_at := clock_timestamp();
       ELSIF NOT EXISTS (SELECT 1 FROM job_logs l WHERE .. AND l.slot = p_slot
                          AND l.claims_slot AND l.status = 'Completed') THEN */
    atomic {
        acq = 0; f = 0; found = 0; c = now;
        i = 1;
        do
        :: i < MAXF -> if :: l_slot[i] == s && L_V(i, me) == COMPL -> found = 1 :: else fi; i++
        :: else -> break
        od;
        i = 0;
        if
        :: found -> goto acq_v2       /* version 2 reports slot_done */
        :: else
        fi
    }
    /* WITH claimed AS (UPDATE queue_locks q SET created_time = v_at, owner = p_owner,
           fence = nextval('queue_lock_fence_seq'), log_id = nextval('job_logs_id_seq'),
           expires_at = v_at + lease WHERE .. AND q.owner IS NULL RETURNING q.fence, q.log_id)
       (waits on another writer of the row, then rechecks on its newest version) */
    atomic {
        ROW_FREE_FOR(me) ->
        if
        :: R_EX(me) && R_OWN(me) == 0 ->
            lock_row(me);
            seq++; assert(seq < MAXF);
            p_own = txown[me]; p_fen = seq; p_exp = c + LEASE; f = seq;
            COVERED(15)    /* the fast path claims a free row */
        :: else -> goto acq_v2        /* no row yet, or a holder (live or lapsed): version 2 */
        fi
    }
    /* , written AS (INSERT INTO job_logs (id, .., status, .., fence, slot, ..)
           SELECT c.log_id, .., 'Processing', .., c.fence, p_slot, .. FROM claimed c
           ON CONFLICT (queue_name, job_name, slot) WHERE claims_slot DO NOTHING RETURNING l.id)
       SELECT .. INTO v_fence, v_log_id, v_inserted   (the same statement as the UPDATE: it
       waits on an uncommitted claiming row of the slot while holding the lock row) */
    atomic {
#ifndef BUG_SLOT_BY_QUERY
        !SLOT_WAIT(s, me) ->
        i = 1; ins = 1;
        do
        :: i < MAXF -> if :: l_slot[i] == s && claims(L_V(i, me)) -> ins = 0 :: else fi; i++
        :: else -> break
        od;
        i = 0;
#else
        ins = 1;   /* (bug) no unique index */
#endif
        if
        :: ins -> lock_log(f, me); l_p[f] = PROC; l_slot[f] = s; acq = 1;
           COVERED(16); goto acq_done    /* granted on the fast path */
        :: else
        fi
    }
    /* ELSIF v_fence IS NOT NULL THEN   (the slot finished or started meanwhile: give it back)
       UPDATE queue_locks q SET owner = NULL, log_id = NULL, expires_at = clock_timestamp()
        WHERE .. AND q.fence = v_fence   (our own uncommitted claim) */
    atomic {
        assert(p_tx == me && p_fen == f);
        p_own = 0; p_exp = now; f = 0;
        COVERED(17)    /* the fast path gives the lock back */
    }
acq_v2:
    /* SELECT * INTO .. FROM dlock_acquire_v2(..) */
#endif
    /* dlock_completed_slot_v1: SELECT .. FROM job_logs l WHERE .. AND l.slot = p_slot
       AND l.claims_slot AND l.status = 'Completed' */
    atomic {
        acq = 0; f = 0; found = 0; att = 0;
        i = 1;
        do
        :: i < MAXF -> if :: l_slot[i] == s && L_V(i, me) == COMPL -> found = 1 :: else fi; i++
        :: else -> break
        od;
        i = 0;
        if
        :: found -> goto acq_done     /* reason := 'slot_done' */
        :: else
        fi
    }
acq_pass:
    /* dlock_claim_lock_v1: FOR attempt IN 1..5 LOOP
         SELECT * INTO v_lock FROM queue_locks q WHERE q.queue_name = .. AND q.job_name = .. */
    atomic {
        if
        :: att == 5 -> goto acq_done  /* nothing decided in five passes: reported as held */
        :: else
        fi;
        att++;
        vex = R_EX(me); vown = R_OWN(me); vfen = R_FEN(me); vexp = R_EXP(me);
        if
        :: !vex -> goto acq_insert
#ifndef BUG_ACQUIRE_NOT_IDEMPOTENT
        :: vex && vown == txown[me] ->
            /* IF v_lock.owner = p_owner THEN ours := true: a resent call finds its grant */
            f = vfen; goto acq_ours
#endif
        :: else
        fi
    }
#ifndef BUG_TAKEOVER_NO_EXPIRY
    /* IF v_lock.owner IS NOT NULL AND v_lock.expires_at >= clock_timestamp() THEN RETURN */
    atomic {
        if
#ifndef BUG_NO_TAKEOVER
        :: vown != 0 && vexp >= now -> goto acq_done    /* held and live: 'held' */
#else
        :: vown != 0 -> goto acq_done                   /* (bug) held, lapsed or not */
#endif
        :: else
        fi
    }
#endif
    /* claimed_at := clock_timestamp(); */
    c = now;
    /* UPDATE queue_locks q SET created_time = claimed_at, owner = p_owner,
           fence = nextval('queue_lock_fence_seq'), log_id = nextval('job_logs_id_seq'),
           expires_at = claimed_at + p_lease
        WHERE .. AND q.fence = v_lock.fence AND (q.owner IS NULL OR q.expires_at < claimed_at)
        RETURNING q.fence, q.log_id INTO fence, log_id
       (waits on another writer of the row, then rechecks on its newest version) */
    atomic {
        ROW_FREE_FOR(me) ->
#ifndef BUG_TAKEOVER_NO_EXPIRY
        if
        :: R_EX(me) && R_FEN(me) == vfen && (R_OWN(me) == 0 || R_EXP(me) < c) ->
#elif defined(BUG_NO_TAKEOVER)
        if
        :: R_EX(me) && R_FEN(me) == vfen && R_OWN(me) == 0 ->
#else
        if
        :: R_EX(me) && R_FEN(me) == vfen ->
#endif
            /* a live lease is never taken over */
            assert(R_OWN(me) == 0 || R_EXP(me) < now);
            lock_row(me);
            seq++; assert(seq < MAXF);
            p_own = txown[me]; p_fen = seq; p_exp = c + LEASE; f = seq;
            COVERED(1)    /* a grant by UPDATE: a free row, or a take-over */
        :: else -> f = 0
        fi;
        if
        :: f == 0 -> goto acq_pass    /* the row changed under us: read it again */
        :: f != 0 && vown == 0 -> goto acq_slot
        :: else
        fi
    }
    /* UPDATE job_logs l SET status = 'Exited', .. WHERE l.id = v_lock.log_id
       AND l.status = 'Processing'   (close the lapsed holder's row, so its slot may run again) */
    atomic {
        LOG_FREE_FOR(vfen, me) ->
        if
        :: L_V(vfen, me) == PROC -> lock_log(vfen, me); l_p[vfen] = EXIT;
           COVERED(2)    /* a lapsed holder's Processing row closed */
        :: else
        fi;
        goto acq_slot
    }
acq_insert:
    /* claimed_at := clock_timestamp(); */
    c = now;
#ifdef BUG_FENCE_BEFORE_WAIT
    /* (bug) INSERT .. VALUES (.., nextval('queue_lock_fence_seq'), ..): drawn here, before the
       insert learns whether it conflicts */
    atomic { seq++; nf = seq }
#endif
    /* INSERT INTO queue_locks (.., owner, fence, log_id, expires_at)
       VALUES (.., p_owner, 0, nextval('job_logs_id_seq'), claimed_at + p_lease)
       ON CONFLICT DO NOTHING RETURNING q.log_id INTO log_id
       (waits while another transaction's write of the row is uncommitted) */
    atomic {
        ROW_FREE_FOR(me) ->
        if
        :: R_EX(me) -> ins = 0; COVERED(13)     /* conflict: DO NOTHING */
        :: else ->
            ins = 1; lock_row(me);
            p_ex = 1; p_own = txown[me]; p_exp = c + LEASE;
#ifdef BUG_FENCE_BEFORE_WAIT
            p_fen = nf; assert(nf < MAXF); f = nf
#else
            p_fen = 0
#endif
        fi;
        if
        :: !ins -> goto acq_pass      /* CONTINUE: someone else made the row meanwhile */
        :: else
        fi
    }
#ifndef BUG_FENCE_BEFORE_WAIT
    /* UPDATE queue_locks q SET fence = nextval('queue_lock_fence_seq') WHERE ..
       RETURNING q.fence INTO fence   (the row is ours: drawn after any earlier grant of it
       committed) */
    atomic { seq++; assert(seq < MAXF); p_fen = seq; f = seq }
#endif
acq_slot:
    /* dlock_claim_slot_v1: FOR attempt IN 1..2 LOOP
         INSERT INTO job_logs (id, .., status, .., fence, slot, ..)
         VALUES (p_log_id, .., 'Processing', .., p_fence, p_slot, ..)
         ON CONFLICT (queue_name, job_name, slot) WHERE claims_slot DO NOTHING
       (waits on an uncommitted write of a claiming row of this slot) */
    atomic {
#ifndef BUG_SLOT_BY_QUERY
        !SLOT_WAIT(s, me) ->
        k++;
        i = 1; ins = 1;
        do
        :: i < MAXF -> if :: l_slot[i] == s && claims(L_V(i, me)) -> ins = 0 :: else fi; i++
        :: else -> break
        od;
        i = 0;
#else
        k++;
        ins = 1;   /* (bug) no unique index: the first look (slot_done) was the only check */
#endif
        if
        :: ins -> lock_log(f, me); l_p[f] = PROC; l_slot[f] = s; acq = 1; goto acq_done
        :: else
        fi
    }
    /* UPDATE job_logs l SET status = 'Exited', .. WHERE .. AND l.slot = p_slot
       AND l.claims_slot AND l.status = 'Processing'   (a Processing row whose lock row was
       deleted by hand); EXIT WHEN NOT FOUND */
    atomic {
        !PROC_WAIT(s, me) ->
        i = 1; found = 0;
        do
        :: i < MAXF ->
            if
            :: l_slot[i] == s && L_V(i, me) == PROC -> lock_log(i, me); l_p[i] = EXIT;
               found = 1; COVERED(3)    /* an orphaned Processing row closed */
            :: else
            fi;
            i++
        :: else -> break
        od;
        i = 0;
        if
        :: found && k < 2 -> goto acq_slot
        :: else
        fi
    }
    /* The slot finished or started meanwhile: give the lock back.
       UPDATE queue_locks q SET owner = NULL, log_id = NULL, expires_at = clock_timestamp()
        WHERE .. AND q.fence = v_claim.fence   (our own uncommitted grant) */
    atomic {
        assert(p_tx == me && p_fen == f);
        p_own = 0; p_exp = now; f = 0;
        COVERED(4)    /* lock given back: slot done or running */
        /* SELECT .. INTO holder, since, completed_at, reason FROM job_logs ..: read only */
        goto acq_done
    }
acq_ours:
    atomic { acq = 1; COVERED(5) }    /* a resent acquire finds its own grant */
acq_done:
    /* INSERT INTO job_logs .. 'Exited', 'Not run: ..' (the loser's row): claims nothing */
    end_call(me)
}

/* SELECT dlock_release_v2(queue, job, owner, fence, log_id, status, remark). In: me, f, st.
   Out: res. */
inline release(me) {
#ifndef PROTO_V2
    /* dlock_release_v4, as dlock_release_v3 (migration 0011): one statement frees the row and
       closes the log row; when the row is not ours, dlock_release_v2 below says why, in the
       same transaction.
       WITH freed AS (UPDATE queue_locks q SET owner = NULL, log_id = NULL,
           expires_at = clock_timestamp() WHERE .. AND q.owner = p_owner AND q.fence = p_fence
           RETURNING q.fence) */
    atomic {
        ROW_FREE_FOR(me) ->
#ifndef BUG_RELEASE_NO_CHECK
        if
        :: R_EX(me) && R_OWN(me) == txown[me] && R_FEN(me) == f ->
#else
        if
        :: R_EX(me) && R_OWN(me) != 0 ->
#endif
            assert(OWN_GRANT(me));     /* never deletes or changes its successor's lock */
            lock_row(me); p_own = 0; p_exp = now
        :: else -> goto rel_v2
        fi
    }
    /* , closed AS (UPDATE job_logs l SET status = p_status, .. FROM freed WHERE l.id = p_log_id
           AND l.status = 'Processing' AND l.fence = freed.fence)   (the same statement)
       IF v_freed THEN RETURN 'released' */
    atomic {
        LOG_FREE_FOR(f, me) ->
        if
        :: L_V(f, me) == PROC -> lock_log(f, me); l_p[f] = st
        :: else
        fi;
        res = R_RELEASED; COVERED(18);    /* released by version 3's one statement */
        goto rel_end
    }
rel_v2:
    /* RETURN dlock_release_v2(..) */
#endif
    /* UPDATE queue_locks q SET owner = NULL, log_id = NULL, expires_at = clock_timestamp()
        WHERE .. AND q.owner = p_owner AND q.fence = p_fence */
    atomic {
        ROW_FREE_FOR(me) ->
#ifndef BUG_RELEASE_NO_CHECK
        if
        :: R_EX(me) && R_OWN(me) == txown[me] && R_FEN(me) == f ->
#else
        if
        :: R_EX(me) && R_OWN(me) != 0 ->
#endif
            /* never deletes or changes its successor's lock */
            assert(OWN_GRANT(me));
            lock_row(me); p_own = 0; p_exp = now
        :: else -> goto rel_other
        fi
    }
    /* UPDATE job_logs l SET status = p_status, .. WHERE l.id = p_log_id
       AND l.status = 'Processing' AND l.fence = p_fence;  RETURN 'released' */
    atomic {
        LOG_FREE_FOR(f, me) ->
        if
        :: L_V(f, me) == PROC -> lock_log(f, me); l_p[f] = st
        :: else
        fi;
        res = R_RELEASED;
        goto rel_end
    }
rel_other:
#ifndef BUG_RELEASE_NOT_IDEMPOTENT
    /* IF EXISTS (SELECT 1 FROM job_logs l WHERE l.id = p_log_id AND l.fence = p_fence
       AND l.status = p_status AND right(l.remark, ..) = '; ' || p_remark)
       THEN RETURN 'released'   (only this holder's own release writes p_status there) */
    atomic {
        if
        :: L_V(f, me) == st -> res = R_RELEASED; COVERED(6); goto rel_end  /* a resent release */
#ifndef BUG_RELEASE_BLIND_TO_RESET
        /* dlock_release_v4: or the row is Reset (only a Completed row is, and only this grant's
           release writes Completed there): released, and an operator reset the slot since */
        :: st == COMPL && L_V(f, me) == RESET -> res = R_RELEASED; COVERED(22); goto rel_end
#endif
        :: else -> res = R_LOST
        fi
    }
#else
    res = R_LOST;
#endif
    /* UPDATE job_logs l SET status = 'Exited', .. WHERE l.id = p_log_id
       AND l.status = 'Processing' AND l.fence = p_fence
       AND NOT EXISTS (SELECT 1 FROM queue_locks q WHERE .. AND q.fence = p_fence);
       RETURN 'lost' */
    atomic {
        LOG_FREE_FOR(f, me) ->
        if
        :: L_V(f, me) == PROC && !(R_EX(me) && R_FEN(me) == f) -> lock_log(f, me); l_p[f] = EXIT
        :: else
        fi
    }
rel_end:
    end_call(me)
}

/* SELECT lease_index, outcome FROM dlock_renew_all_v1(..), for one lease. In: me, f.
   Out: res. */
inline renew(me) {
    /* PERFORM 1 FROM queue_locks q WHERE .. AND q.owner = p_owners[i] AND q.fence = p_fences[i]
       FOR UPDATE SKIP LOCKED */
    atomic {
        if
        :: !ROW_FREE_FOR(me) -> found = 0     /* locked by another transaction: skipped */
#ifndef BUG_RENEW_NO_CHECK
        :: else -> found = (R_EX(me) && R_OWN(me) == txown[me] && R_FEN(me) == f)
#else
        :: else -> found = (R_EX(me) && R_OWN(me) != 0)
#endif
        fi;
        if
        :: found -> lock_row(me)
        :: else -> goto ren_other
        fi
    }
    /* UPDATE queue_locks q SET expires_at = clock_timestamp() + lease WHERE queue/job */
    atomic {
        assert(OWN_GRANT(me));      /* never changes its successor's lock */
        p_exp = now + LEASE;
        res = R_RENEWED;
        goto ren_end
    }
ren_other:
    /* ELSIF EXISTS (SELECT 1 FROM queue_locks q WHERE .. owner .. fence) 'busy' ELSE 'lost' */
    atomic {
        if
        :: R_EX(me) && R_OWN(me) == txown[me] && R_FEN(me) == f -> res = R_BUSY;
           COVERED(7)    /* renewal skipped a row another transaction holds */
        :: else -> res = R_LOST
        fi
    }
ren_end:
    end_call(me)
}

/* SELECT dlock_abandon_v2(queue, job, owner, ..): acquire's outcome unknown; free whatever this
   owner holds. */
inline abandon(me) {
    /* SELECT q.log_id INTO v_log_id FROM queue_locks q WHERE .. AND q.owner = p_owner
       FOR UPDATE */
    atomic {
        ROW_FREE_FOR(me) ->
        if
        :: R_EX(me) && R_OWN(me) == txown[me] -> lock_row(me); vfen = R_FEN(me)
        :: else -> goto ab_end
        fi
    }
    /* UPDATE queue_locks q SET owner = NULL, log_id = NULL, expires_at = clock_timestamp()
        WHERE queue/job   (the row this transaction locked) */
    atomic { assert(p_tx == me && p_own == txown[me]); p_own = 0; p_exp = now }
    /* UPDATE job_logs l SET status = 'Exited', .. WHERE l.id = v_log_id
       AND l.status = 'Processing' */
    atomic {
        LOG_FREE_FOR(vfen, me) ->
        if
        :: L_V(vfen, me) == PROC -> lock_log(vfen, me); l_p[vfen] = EXIT
        :: else
        fi
    }
ab_end:
    /* INSERT INTO job_logs .. 'Exited' (when nothing was closed): claims nothing */
    end_call(me)
}

#define HOLDER_LOCALS \
    byte me; byte o; byte s; byte f; byte st; byte res; bool acq; bool delivered; \
    bool vex; byte vown; byte vfen; byte vexp; byte c; byte att; byte nf; \
    bool found; bool ins; byte i; byte j; byte k

proctype holder(byte id) {
    HOLDER_LOCALS;
    byte rn;          /* renewals made in this hold */
    atomic {
        me = id;
        txown[me] = me;   /* owner token: unique per hold (one hold per holder) */
#ifdef ANY_SLOT
        if
        :: s = 1
#if NSLOT > 1
        :: s = 2
#endif
        fi
#elif defined(LIVENESS)
        s = (me == WAITER -> NSLOT : 1)   /* the others contend for slot 1 and the lock */
#else
        s = (me - 1) % NSLOT + 1     /* holders 1 and 3 share slot 1; holder 2 has slot 2 */
#endif
    }
send_acquire:
    acquire(me);
    if
    :: !delivered ->
        /* the reply was lost after the commit */
        if
        :: goto send_acquire   /* resent on a fresh connection (idempotent for its owner) */
        :: atomic { acq = 0; f = 0 }
           abandon(me);        /* or LockDatabaseError: DistributedLock._abandon */
           if
           :: me == WAITER -> goto send_acquire    /* it keeps waiting */
           :: else -> goto done
           fi
        fi
    :: else
    fi;
    atomic {
        if
        :: me == WAITER && !acq -> goto send_acquire   /* held: wait, then ask again */
        :: else
        fi;
        waiter_got = waiter_got || me == WAITER;
        if
        :: !acq ->
            /* an acquire answered 'not acquired' leaves its caller holding nothing */
            assert(!(c_ex && c_own == txown[me]));
            goto done
        :: else
        fi;
        hheld[me] = 1; hfen[me] = f; inbody[me] = 1; check_invariants()
    }
    /* the body runs; the renewal thread renews */
    do
    :: rn < MAXREN ->
        rn++;
        renew(me);
        atomic {
            if
            :: delivered && res == R_LOST ->
                assert(lost[f]);   /* LockLost only when the lease was really taken */
                COVERED(8)
            :: else
            fi;
            res = 0
        }
    :: CAN_CRASH(me) && crashes < MAXCRASH -> crashes++; goto crashed   /* killed in the body */
    :: break
    od;
    atomic {
        inbody[me] = 0;
        if
        :: st = COMPL       /* the body returned */
        :: st = FAIL        /* the body raised (LockLost from a fenced write among others) */
        fi
    }
send_release:
    release(me);
    if
    :: !delivered -> goto send_release    /* resent (idempotent for its owner) */
    :: else
    fi;
    atomic {
        /* 'lost' (LockLost) exactly when the grant was taken from this holder */
        assert((res == R_LOST) == lost[f]);
        if
        :: res == R_LOST -> COVERED(10)   /* LockLost on release */
        :: res == R_RELEASED && st == COMPL -> COVERED(11)   /* a slot completed */
        :: else
        fi;
        hheld[me] = 0;
        check_invariants()
    }
done:
crashed:
    atomic {
        hheld[me] = 0; inbody[me] = 0; nfin++;
        me = 0; s = 0; f = 0; st = 0; res = 0; acq = 0; delivered = 0; rn = 0
    }
}

/* An operator's release (dlock_operator_release_v1): clear or delete the lock row and mark the
   holder's Processing row Exited, in one transaction. The holder must then learn LockLost.
   With --force (the default here) it frees whatever holds the lock. With -DOP_FENCED it is
   `dlock release --fence F`: the operator reads F in `dlock status` (a plain read, one step),
   and the release, later, acts only if the lock still carries F under its row lock; otherwise
   it touches nothing ('fence_moved', 'not_held'). It must never end a grant it was not shown. */
active proctype operator() {
    HOLDER_LOCALS;
    byte lg;
#ifdef OP_FENCED
    byte seen;    /* the fence `dlock status` showed */
#endif
    me = OPTX;
    do
#ifndef OP_FENCED
    :: /* UPDATE queue_locks SET owner = NULL, log_id = NULL, expires_at = clock_timestamp()
          (or DELETE FROM queue_locks) WHERE queue/job, while someone holds it */
        atomic {
            forced < MAXOP && ROW_FREE_FOR(me) && c_ex && c_own != 0 ->
            forced++;
            lg = c_fen; lock_row(me);
            if
            :: p_ex = 0                    /* DELETE */
            :: p_own = 0; p_exp = now      /* UPDATE .. SET owner = NULL */
            fi
        }
#else
    :: /* dlock status: SELECT fence FROM queue_locks WHERE .. AND owner IS NOT NULL */
        atomic { forced < MAXOP && c_ex && c_own != 0 -> forced++; seen = c_fen }
#ifdef BUG_OPERATOR_FENCE_APART
        /* the fence compared by a read of its own; then the row is locked and whatever holds
           it is freed: a take-over in between is released in place of the grant shown */
        if
        :: atomic { c_ex && c_own != 0 && c_fen == seen }
        :: atomic { !(c_ex && c_own != 0 && c_fen == seen) -> seen = 0; goto op_next }
        fi;
#endif
        /* SELECT * FROM queue_locks WHERE queue/job FOR UPDATE; 'not_held' or 'fence_moved'
           touch nothing; else UPDATE .. SET owner = NULL (or DELETE), as with --force */
        atomic {
            ROW_FREE_FOR(me) ->
            lock_row(me);
            if
            :: !(p_ex && p_own != 0) ->
                commit(me); seen = 0; COVERED(20); goto op_next    /* not_held */
#ifndef BUG_OPERATOR_FENCE_APART
            :: p_ex && p_own != 0 && p_fen != seen ->
                commit(me); seen = 0; COVERED(19); goto op_next    /* fence_moved */
#endif
            :: else
            fi;
            lg = p_fen;
            /* a fenced release ends the grant it was shown, and no other */
            assert(lg == seen); seen = 0;
            if
            :: p_ex = 0                    /* DELETE */
            :: p_own = 0; p_exp = now      /* UPDATE .. SET owner = NULL */
            fi
        }
#endif
        /* UPDATE job_logs SET status = 'Exited', remark = .. WHERE id = log_id
           AND status = 'Processing'; COMMIT */
        atomic {
            LOG_FREE_FOR(lg, me) ->
            if
            :: L_V(lg, me) == PROC -> lock_log(lg, me); l_p[lg] = EXIT
            :: else
            fi;
            commit(me);
            lg = 0; COVERED(12)    /* an operator's release ended a grant */
        }
#ifdef OP_FENCED
op_next:
        skip
#endif
#if MAXRESET > 0
    :: /* dlock_reset_slot_v1: SELECT l.id FROM job_logs l WHERE .. AND l.slot = p_slot AND
          l.claims_slot AND l.status = 'Completed' FOR UPDATE; INSERT the Reset audit row (it
          claims nothing); UPDATE job_logs SET status = 'Reset' WHERE id = ..; COMMIT */
        atomic {
            resets < MAXRESET ->
            resets++;
            lg = 1;
            do    /* any slot: its Completed row, if it has one (nobody else writes one) */
            :: lg < MAXF && l_c[lg] == COMPL && LOG_FREE_FOR(lg, me) -> break
            :: lg < MAXF -> lg++
            :: lg == MAXF -> lg = 0; break    /* a slot with no Completed row: NULL, no change */
            od;
            if
            :: lg != 0 -> lock_log(lg, me); l_p[lg] = RESET
            :: else
            fi
        }
        atomic { commit(me); lg = 0 }
#endif
    :: break
    od;
    opdone = 1;
crashed:    /* (never) */
    skip
}

/* The database clock: moves forward one tick at a time up to TMAX while holders run; once every
   holder is gone (finished or crashed), it may jump past every lease. */
active proctype clock() {
end_clock:
    do
    :: atomic { !ended && now < TMAX -> now++ }
    :: atomic { ended && now <= TMAX + LEASE -> now = TMAX + LEASE + 1 }
    od
}

#ifndef LIVENESS
/* After all holders: every slot not Completed can still run. Once every lease has lapsed, a
   fresh acquire of the slot is granted (no slot stays blocked by a crashed holder); its
   release then completes the slot. */
active proctype probe() {
    HOLDER_LOCALS;
    me = PROBETX;
    (nfin == NH && opdone) -> ended = 1;
    now == TMAX + LEASE + 1;
    s = 1;
    do
    :: s <= NSLOT ->
        atomic {
            txown[me] = PROBE_OWNER + s;
            i = 1; found = 0;
            do
            :: i < MAXF -> if :: l_slot[i] == s && l_c[i] == COMPL -> found = 1 :: else fi; i++
            :: else -> break
            od;
            i = 0
        }
        if
        :: !found ->
            acquire(me);
            assert(acq); COVERED(14);    /* the probe ran a slot nobody completed */
            hfen[me] = f; st = COMPL;
            release(me);
            assert(res == R_RELEASED)
        :: else
        fi;
        s++
    :: else -> break
    od;
crashed:    /* (never: the probe does not crash) */
    skip
}
#else
/* Once every holder but the waiter is gone, the clock may run past every lease, as it does
   after the last holder in the safety checks: a crashed holder's lease then lapses. */
active proctype others_gone() {
    (nfin == NH - 1 && !waiter_got || nfin == NH) && opdone -> ended = 1
}

/* Under weak fairness (pan -a -f): a waiter that keeps asking is eventually granted the lock,
   and every holder eventually ends (returns or crashes): no livelock, no wait without end. */
ltl waiter_is_granted { <> waiter_got }
ltl every_holder_ends { <> (nfin == NH) }
#endif

init {
    atomic {
        byte n = 1;
        do
        :: n <= NH -> run holder(n); n++
        :: else -> break
        od
    }
}
