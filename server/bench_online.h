// cserve bench --connect HOST:PORT: the online (serving) benchmark against a running server.
#ifndef CS_BENCH_ONLINE_H
#define CS_BENCH_ONLINE_H

int cs_bench_online(int argc, char **argv);

#endif
