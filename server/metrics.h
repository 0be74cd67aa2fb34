// Prometheus metrics of the server: counters and latency histograms fed from engine events and
// HTTP responses, rendered as the text exposition format 0.0.4 for GET /metrics.
//
//     cs_metrics *m = cs_metrics_new();
//     ... on CS_EVENT_FINISH:  cs_metrics_choice_finished(m, ev.finish_reason);
//     ... on CS_EVENT_DONE:    cs_metrics_request_done(m, &ev);
//     ... on GET /metrics:
//     cs_engine_stats st;
//     cs_engine_stats_get(engine, &st);
//     size_t len;
//     char *text = cs_metrics_render(m, &st, "SmolLM2-135M", &len);   // send, then free(text)
//     cs_metrics_free(m);
//
// Names follow vLLM's (cserve: instead of vllm:), so its dashboards work with the prefix changed.
// Not thread-safe: one thread (the server's I/O thread) feeds and renders.
#ifndef CS_METRICS_H
#define CS_METRICS_H

#include <stddef.h>

#include "cserve/engine.h"

typedef struct cs_metrics cs_metrics;

// NULL when out of memory. Everything starts at zero.
cs_metrics *cs_metrics_new(void);
// NULL is fine.
void cs_metrics_free(cs_metrics *m);
// A request ended (its CS_EVENT_DONE): adds prompt_tokens and completion_tokens to the token counters, counts the request,
// observes ttft_ms, total_ms, queue_ms (converted to seconds) in their histograms (ttft only when completion_tokens > 0).
void cs_metrics_request_done(cs_metrics *m, const cs_event *done);
// One choice ended with this reason (CS_EVENT_FINISH).
void cs_metrics_choice_finished(cs_metrics *m, cs_finish_reason why);
// Time between two consecutive tokens of one choice, seconds.
void cs_metrics_inter_token(cs_metrics *m, double seconds);
// An HTTP response was sent with this status code (100..599; others ignored).
void cs_metrics_http_response(cs_metrics *m, int status);
// The text exposition (format 0.0.4), malloc'd, NUL-terminated, *len its length (may be NULL). st is NULL while the model
// loads (then the engine gauges and prefix-cache counters are left out). model_name is escaped as a label value.
// Returns NULL when out of memory. The caller frees the text.
char *cs_metrics_render(const cs_metrics *m, const cs_engine_stats *st, const char *model_name, size_t *len);

#endif
