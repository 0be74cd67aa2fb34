// The C client library against a real `cserve serve` (CSERVE_BIN) on a free port: streamed
// generate equal to its final text, cancel from the token callback, select, tokenize, stats,
// errors from the server, and a refused connection. Skipped (77) without the default model.
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cserve/client.h"
#include "test_util.h"

static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        return -1;
    close(fd);
    return ntohs(a.sin_port);
}

// Starts the server and waits for its "ready: model" line (the model loads after the sockets
// listen); returns its pid or -1.
static pid_t start_server(const char *bin, const char *model, int port) {
    int fds[2];
    if (pipe(fds) != 0) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        char ports[16];
        snprintf(ports, sizeof ports, "%d", port);
        execl(bin, bin, "serve", "--model", model, "--port", ports, "--http-port", "0", "--max-model-len", "512",
              "--kv-cache-memory", "67108864", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    FILE *err = fdopen(fds[0], "r");
    char line[512];
    bool ready = false;
    while (!ready && fgets(line, sizeof line, err)) ready = strstr(line, "ready: model") != NULL;
    // keep draining the server's log so it never blocks on a full pipe
    if (ready && fork() == 0) {
        while (fgets(line, sizeof line, err)) {}
        _exit(0);
    }
    fclose(err);
    return ready ? pid : -1;
}

typedef struct stream {
    char text[4096];
    size_t len;
    int pieces, cancel_after;
} stream;

static int on_piece(void *user, const char *text, size_t len, int32_t token) {
    stream *s = user;
    if (s->len + len < sizeof s->text) {
        memcpy(s->text + s->len, text, len);
        s->len += len;
    }
    return ++s->pieces == s->cancel_after;
}

static void test_client(int port) {
    cs_client *c;
    char err[512];
    TEST_CONDF(cs_client_connect(&c, "127.0.0.1", port, NULL, err, sizeof err) == 0, "%s", err);
    if (!c) return;
    cs_client_gen_params p;
    cs_client_gen_params_default(&p);
    p.prompt = "The capital of France is";
    p.max_tokens = 8;
    p.temperature = 0;
    stream s = {0};
    cs_client_result r;
    TEST_CONDF(cs_client_generate(c, &p, on_piece, &s, &r, err, sizeof err) == 0, "%s", err);
    TEST_COND(r.text && strncmp(r.text, " Paris.", 7) == 0);               // the model's greedy answer
    TEST_COND(r.text && s.len == strlen(r.text) && !memcmp(s.text, r.text, s.len)); // stream == final
    TEST_COND(s.pieces == r.completion_tokens && r.n_tokens == r.completion_tokens && r.prompt_tokens == 5);
    TEST_COND(!strcmp(r.finish_reason, "length") && r.completion_tokens == 8);
    cs_client_result_free(&r);
    // cancel from the callback after 2 pieces
    stream s2 = {.cancel_after = 2};
    p.max_tokens = 200;
    p.ignore_eos = true;
    TEST_CONDF(cs_client_generate(c, &p, on_piece, &s2, &r, err, sizeof err) == 0, "%s", err);
    TEST_CONDF(!strcmp(r.finish_reason, "cancelled") && r.completion_tokens < 200, "finish %s after %d tokens",
               r.finish_reason, r.completion_tokens);
    cs_client_result_free(&r);
    const char *choices[] = {" London", " Paris", " Berlin"};
    int best = -1;
    double lp[3];
    TEST_CONDF(cs_client_select(c, "The capital of France is", choices, 3, &best, lp, err, sizeof err) == 0, "%s", err);
    TEST_COND(best == 1 && lp[1] > lp[0] && lp[1] > lp[2] && lp[1] < 0);
    int32_t *ids = NULL;
    int n = 0;
    TEST_CONDF(cs_client_tokenize(c, "Hello world", false, &ids, &n, err, sizeof err) == 0, "%s", err);
    TEST_COND(n == 2 && ids && ids[0] == 19556 && ids[1] == 905);
    free(ids);
    // the server's refusal arrives as its JSON-RPC code and message
    p.temperature = -1;
    TEST_COND(cs_client_generate(c, &p, NULL, NULL, &r, err, sizeof err) == -32602 && strstr(err, "temperature"));
    char *json = NULL;
    TEST_CONDF(cs_client_stats(c, &json, err, sizeof err) == 0, "%s", err);
    TEST_CONDF(json && strstr(json, "\"kv_blocks_used\":0") && strstr(json, "\"running\":0"), "stats %s", json ? json : "");
    free(json);
    cs_client_close(c);
}

int main(void) {
    const char *bin = test_env("CSERVE_BIN"), *model = test_env("CSERVE_MODEL");
    if (!bin || !model || access(model, R_OK) != 0) {
        puts("cserve binary or default model absent: skipped");
        return 77;
    }
    signal(SIGPIPE, SIG_IGN);
    int port = free_port();
    cs_client *c;
    char err[256];
    TEST_COND(cs_client_connect(&c, "127.0.0.1", port, NULL, err, sizeof err) == CS_CLIENT_EIO && err[0]);
    pid_t pid = start_server(bin, model, port);
    TEST_CONDF(pid > 0, "the server did not start on port %d", port);
    if (pid > 0) {
        test_client(port);
        kill(pid, SIGTERM);
        int status = 0;
        waitpid(pid, &status, 0);
        TEST_CONDF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "server exit status %d", status);
    }
    return TEST_REPORT();
}
