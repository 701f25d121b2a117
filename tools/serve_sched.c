// The scheduler of `codecllm serve` (see serve.h): one thread owns the engine and its slots and
// runs continuous batching. Each iteration, under s->mu: jobs whose client went away leave their
// slot, waiting jobs take free slots (the slot whose cached tokens share the longest prefix with
// the prompt), every decoding job samples its next token from its logits (its text grows, it may
// finish); then, without the lock, one engine call runs that token of every decoding job plus a
// chunk of one job's prompt (bounded: a long prompt never holds the others back by more than a
// step), and the logits go back to the slots. Sequences join and leave between calls; with greedy
// sampling on the CPU each answer is the one a lone `run` gives (cllm_engine_forward_batch).
#include "cli.h"
#include "serve.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---- the slots' jobs ---------------------------------------------------------------------

// The job of slot i leaves it (its cache stays for a later prompt with the same prefix).
static void slot_release(serve_srv *s, int i) {
    serve_job *j = s->slots[i].job;
    s->slots[i].job = NULL;
    s->n_used--;
    serve_job_unref(j);
}

static void job_finish(serve_job *j, const char *why) {
    j->finish = why;
    j->state = JOB_DONE;
    pthread_cond_broadcast(&j->cv);
}

// A job whose prompt has not run yet is refused (its connection answers with f).
static void job_refuse(serve_job *j, int status, const char *code, const char *msg) {
    j->fail.status = status;
    j->fail.type = "server_error";
    j->fail.code = code;
    snprintf(j->fail.message, sizeof j->fail.message, "%s", msg);
    j->start = -1;
    job_finish(j, "length");
}

// Slots: cancelled jobs leave; when stopping, unstarted jobs are refused and the others end.
static void sweep_slots(serve_srv *s, int stopping) {
    for (int i = 0; i < s->n_par; i++) {
        serve_job *j = s->slots[i].job;
        if (!j) continue;
        if (j->cancelled || j->state == JOB_DONE) {
            if (j->state != JOB_DONE) job_finish(j, "length");
        } else if (stopping && j->start == 0) {
            job_refuse(j, 503, "shutting_down", "the server is stopping");
        } else if (stopping) {
            job_finish(j, "length");
        } else {
            continue;
        }
        slot_release(s, i);
    }
}

// The waiting queue: cancelled jobs leave; when stopping, every job is refused.
static void sweep_queue(serve_srv *s, int stopping) {
    serve_job **pp = &s->wait_head, *prev = NULL;
    while (*pp) {
        serve_job *j = *pp;
        if (!j->cancelled && !stopping) {
            prev = j;
            pp = &j->next;
            continue;
        }
        *pp = j->next;
        if (s->wait_tail == j) s->wait_tail = prev;
        s->n_waiting--;
        if (stopping && !j->cancelled) job_refuse(j, 503, "shutting_down", "the server is stopping");
        else job_finish(j, "length");
        serve_job_unref(j);
    }
}

// The free slot whose cached tokens share the longest prefix with ids (lowest index on ties);
// -1 when none is free. *common receives that prefix's length.
static int best_slot(const serve_srv *s, const int32_t *ids, size_t n, size_t *common) {
    int best = -1;
    *common = 0;
    for (int i = 0; i < s->n_par; i++) {
        const serve_slot *sl = &s->slots[i];
        if (sl->job) continue;
        size_t p = 0;
        while (p < sl->n_cached && p < n && sl->cached[p] == ids[p]) p++;
        if (best < 0 || p > *common) best = i, *common = p;
    }
    return best;
}

// Waiting jobs take free slots in FIFO order; a prompt runs from the prefix its slot holds (the
// last prompt token always runs again: its logits give the first answer token).
static void admit(serve_srv *s) {
    while (s->wait_head) {
        serve_job *j = s->wait_head;
        size_t p;
        int i = best_slot(s, j->ids, j->n_ids, &p);
        if (i < 0) return;
        s->wait_head = j->next;
        if (!s->wait_head) s->wait_tail = NULL;
        s->n_waiting--;
        j->next = NULL;
        if (p == j->n_ids) p--;
        s->slots[i].n_cached = p;  // the engine rewinds the sequence to p with the first chunk
        s->slots[i].job = j;
        s->n_used++;
        j->slot = i;
        j->fed = p;
        j->state = JOB_PREFILL;
        j->order = ++s->admitted;
    }
}

// ---- one step ----------------------------------------------------------------------------

// Samples slot i's next token (as cli_gen_next does): the text grows, and the job may end (end
// of sequence or turn, a stop sequence, max_tokens, a full context). 1 when the token is to run.
// Every decoding slot's next token into s->sampled[i], in parallel: each job has its own
// sampler, and the GPU waits for this between engine steps (greedy over 32,000 logits per slot).
static void sample_all(serve_srv *s) {
    const size_t vocab = cllm_engine_config(s->e)->vocab_size;
    int *dec = s->item_slot, nd = 0;  // item_slot is free until the items are built
    for (int i = 0; i < s->n_par; i++)
        if (s->slots[i].job && s->slots[i].job->state == JOB_DECODE) dec[nd++] = i;
#pragma omp parallel for schedule(dynamic, 1) if (nd > 1)
    for (int k = 0; k < nd; k++) {
        const int i = dec[k];
        s->sampled_st[i] = cllm_sampler_sample(s->slots[i].job->smp, s->slots[i].logits, vocab,
                                               &s->sampled[i]);
    }
}

static int emit_token(serve_srv *s, int i) {
    serve_slot *sl = &s->slots[i];
    serve_job *j = sl->job;
    const int32_t next = s->sampled[i];
    if (s->sampled_st[i] != CLLM_OK) {
        j->failed = 1;
        return job_finish(j, "length"), 0;
    }
    if (next == s->eos || next == s->eot) return job_finish(j, "stop"), 0;
    cllm_sampler_accept(j->smp, next);
    char piece[512];
    size_t n = 0, at = 0;
    if (cllm_tokenizer_decode_token(s->tok, sl->cached[sl->n_cached - 1], next, piece,
                                    sizeof piece, &n) != CLLM_OK)
        n = 0;
    if (serve_job_append(j, piece, n)) {
        j->failed = 1;
        return job_finish(j, "length"), 0;
    }
    j->n_gen++;
    if (j->r.stream) pthread_cond_broadcast(&j->cv);  // a whole answer waits for job_finish
    if (j->r.n_stop && serve_find_stop(&j->r, j->text, j->len, j->len - n, &at) >= 0) {
        j->len = at;
        j->text[at] = 0;
        return job_finish(j, "stop"), 0;
    }
    if (sl->n_cached + 1 >= s->m.ctx || j->n_gen >= j->r.max_tokens)
        return job_finish(j, "length"), 0;
    s->next_tok[i] = next;
    return 1;
}

// The prefilling slot admitted first among those not yet in this call's items (-1: none).
static int first_prefill(const serve_srv *s, size_t n_items) {
    int pre = -1;
    for (int i = 0; i < s->n_par; i++) {
        const serve_job *j = s->slots[i].job;
        if (!j || j->state != JOB_PREFILL) continue;
        int taken = 0;
        for (size_t k = 0; k < n_items && !taken; k++) taken = s->item_slot[k] == i;
        if (!taken && (pre < 0 || j->order < s->slots[pre].job->order)) pre = i;
    }
    return pre;
}

// The items of the next engine call: the new token of every decoding slot, then chunks of the
// prompts still to run, in admission order, filling one engine step beside the decoding tokens
// (at least 16 prompt tokens): a long prompt takes several calls. Returns the item count.
static size_t build_items(serve_srv *s) {
    sample_all(s);
    size_t n = 0;
    for (int i = 0; i < s->n_par; i++) {
        serve_job *j = s->slots[i].job;
        if (!j || j->state != JOB_DECODE) continue;
        if (!emit_token(s, i)) {
            slot_release(s, i);
            continue;
        }
        s->items[n] = (cllm_batch_item){(uint32_t)i, &s->next_tok[i], 1, s->slots[i].n_cached, 1};
        s->item_slot[n++] = i;
    }
    const size_t step = cllm_engine_step_tokens(s->e);
    size_t budget = step > n + 16 ? step - n : 16;
    for (int pre; budget > 0 && (pre = first_prefill(s, n)) >= 0;) {
        serve_job *j = s->slots[pre].job;
        size_t left = j->n_ids - j->fed, take = left < budget ? left : budget;
        s->items[n] = (cllm_batch_item){(uint32_t)pre, j->ids + j->fed, take, j->fed,
                                        take == left};
        s->item_slot[n++] = pre;
        budget -= take;
    }
    return n;
}

// After the engine call: the slots' caches and logits; a job whose prompt is done starts.
static void collect(serve_srv *s, size_t n, cllm_status st) {
    const size_t vocab = cllm_engine_config(s->e)->vocab_size;
    for (size_t k = 0, row = 0; k < n; k++) {
        const cllm_batch_item *it = &s->items[k];
        serve_slot *sl = &s->slots[s->item_slot[k]];
        serve_job *j = sl->job;
        if (st != CLLM_OK) {  // the caches stay valid below each item's position
            fprintf(stderr, "serve: engine failure: %s\n", cllm_last_error());
            j->failed = 1;
            if (j->start == 0) job_refuse(j, 500, NULL, "the engine failed on the prompt");
            else job_finish(j, "length");
            slot_release(s, s->item_slot[k]);
            continue;
        }
        memcpy(sl->cached + it->pos, it->tokens, it->n * sizeof *it->tokens);
        sl->n_cached = it->pos + it->n;
        if (it->want_logits) memcpy(sl->logits, s->batch_logits + row++ * vocab, vocab * 4);
        if (j->state != JOB_PREFILL) continue;
        j->fed += it->n;
        if (j->fed < j->n_ids) continue;
        j->state = JOB_DECODE;
        j->start = 1;
        pthread_cond_broadcast(&j->cv);
    }
}

static void *sched_main(void *arg) {
    serve_srv *s = arg;
    const size_t vocab = cllm_engine_config(s->e)->vocab_size;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        int stopping = atomic_load(&s->stopping);
        sweep_slots(s, stopping);
        sweep_queue(s, stopping);
        admit(s);
        size_t n = build_items(s);
        if (n == 0) {
            if (s->quit && !s->n_used && !s->wait_head) break;
            pthread_cond_wait(&s->cv, &s->mu);
            continue;
        }
        pthread_mutex_unlock(&s->mu);
        cllm_status st = cllm_engine_forward_batch(s->e, s->items, n, s->batch_logits,
                                                   (size_t)s->n_par * vocab);
        pthread_mutex_lock(&s->mu);
        collect(s, n, st);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

// ---- start and stop ------------------------------------------------------------------------

int serve_sched_start(serve_srv *s) {
    const size_t vocab = cllm_engine_config(s->e)->vocab_size, np = (size_t)s->n_par;
    s->slots = calloc(np, sizeof *s->slots);
    s->items = calloc(np, sizeof *s->items);
    s->item_slot = calloc(np, sizeof *s->item_slot);
    s->next_tok = calloc(np, sizeof *s->next_tok);
    s->sampled = calloc(np, sizeof *s->sampled);
    s->sampled_st = calloc(np, sizeof *s->sampled_st);
    s->batch_logits = calloc(np * vocab, sizeof(float));
    int ok = s->slots && s->items && s->item_slot && s->next_tok && s->sampled &&
             s->sampled_st && s->batch_logits;
    for (size_t i = 0; ok && i < np; i++) {
        s->slots[i].cached = calloc(s->m.ctx, sizeof(int32_t));
        s->slots[i].logits = calloc(vocab, sizeof(float));
        ok = s->slots[i].cached && s->slots[i].logits;
    }
    if (ok && pthread_create(&s->sched, NULL, sched_main, s) == 0) return 0;
    fprintf(stderr, "codecllm serve: error: %s\n", ok ? "cannot start the scheduler thread"
                                                      : "out of memory for the slots");
    s->quit = -1;  // nothing to join
    serve_sched_stop(s);
    return -1;
}

void serve_sched_stop(serve_srv *s) {
    if (s->quit == 0) {
        pthread_mutex_lock(&s->mu);
        s->quit = 1;
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->sched, NULL);
    }
    for (long long i = 0; s->slots && i < s->n_par; i++) {
        free(s->slots[i].cached);
        free(s->slots[i].logits);
    }
    free(s->slots);
    free(s->items);
    free(s->item_slot);
    free(s->next_tok);
    free(s->sampled);
    free(s->sampled_st);
    free(s->batch_logits);
    s->slots = NULL;
}
