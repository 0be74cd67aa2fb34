// AWQ / GPTQ support without Python: quantization_config parsing (accepted values, each
// refusal naming its field), and the repack of hand-packed qweight / qzeros / scales against
// w = s * (q - z) computed here, for both packings, both GPTQ zero conventions and both group
// sizes, with the shape, dtype and act-order checks. The whole-model path (a real checkpoint
// written by tools/write_quantized_checkpoint.py) is tests/test_quant_checkpoint.sh.
#include <math.h>
#include <string.h>

#include "engine/hf_quant.h"
#include "kernels/kernels.h"
#include "test_util.h"

static uint64_t rng = 0x3c6ef372fe94f82bull;
static uint32_t next_u32(void) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng >> 32);
}

// Parses a config whose quantization_config is qc (a JSON object text, or NULL for none).
static cs_status parse(const char *qc, cs_hf_quant *q, char *err, size_t errlen) {
    char json[512];
    snprintf(json, sizeof json, "{\"hidden_size\": 64%s%s}", qc ? ", \"quantization_config\": " : "", qc ? qc : "");
    return cs_hf_quant_parse(json, strlen(json), q, err, errlen);
}

static void expect_refused(const char *qc, const char *message) {
    cs_hf_quant q;
    char err[CS_ERR_LEN] = "";
    cs_status s = parse(qc, &q, err, sizeof err);
    TEST_CONDF(s != CS_OK && strstr(err, message), "%s: got '%s', expected '%s'", qc, err, message);
    TEST_COND(q.method == CS_HF_QUANT_NONE);
}

static void test_parse(void) {
    cs_hf_quant q;
    char err[CS_ERR_LEN];
    TEST_COND(parse(NULL, &q, err, sizeof err) == CS_OK && q.method == CS_HF_QUANT_NONE);
    TEST_COND(parse("null", &q, err, sizeof err) == CS_OK && q.method == CS_HF_QUANT_NONE);
    TEST_COND(parse("{\"quant_method\": \"awq\", \"bits\": 4, \"group_size\": 128, \"zero_point\": true, "
                    "\"version\": \"GEMM\"}", &q, err, sizeof err) == CS_OK &&
              q.method == CS_HF_QUANT_AWQ && q.bits == 4 && q.group == 128);
    // AutoAWQ's own key names
    TEST_COND(parse("{\"quant_method\": \"awq\", \"w_bit\": 4, \"q_group_size\": 64}", &q, err, sizeof err) == CS_OK &&
              q.method == CS_HF_QUANT_AWQ && q.group == 64);
    TEST_COND(parse("{\"quant_method\": \"gptq\", \"bits\": 4, \"group_size\": 64, \"desc_act\": true}", &q, err,
                    sizeof err) == CS_OK &&
              q.method == CS_HF_QUANT_GPTQ && q.desc_act && !q.gptq_v2);
    TEST_COND(parse("{\"quant_method\": \"gptq\", \"bits\": 4, \"group_size\": 128, \"checkpoint_format\": "
                    "\"gptq_v2\"}", &q, err, sizeof err) == CS_OK &&
              q.gptq_v2 && !q.desc_act && !strcmp(cs_hf_quant_name(&q), "GPTQ v2"));

    expect_refused("{\"quant_method\": \"bitsandbytes\"}", "quant_method 'bitsandbytes' is not supported");
    expect_refused("{\"bits\": 4}", "quant_method is missing");
    expect_refused("{\"quant_method\": \"gptq\", \"bits\": 8, \"group_size\": 128}", "bits = 8 is not supported");
    expect_refused("{\"quant_method\": \"awq\", \"w_bit\": 3, \"q_group_size\": 128}", "w_bit = 3 is not supported");
    expect_refused("{\"quant_method\": \"gptq\", \"bits\": 4}", "group_size is missing");
    TEST_COND(parse("{\"quant_method\": \"gptq\", \"bits\": 4, \"group_size\": 32}", &q, err, sizeof err) == CS_OK &&
              q.group == 32);
    expect_refused("{\"quant_method\": \"gptq\", \"bits\": 4, \"group_size\": 16}", "group_size = 16 is not supported");
    expect_refused("{\"quant_method\": \"gptq\", \"bits\": 4, \"group_size\": -1}", "group_size = -1 is not supported");
    expect_refused("{\"quant_method\": \"gptq\", \"bits\": \"4\", \"group_size\": 64}", "bits: expected an integer");
    expect_refused("{\"quant_method\": \"awq\", \"bits\": 4, \"group_size\": 64, \"version\": \"gemv\"}",
                   "version 'gemv' is not supported");
    expect_refused("{\"quant_method\": \"awq\", \"bits\": 4, \"group_size\": 64, \"zero_point\": false}",
                   "zero_point false is not supported");
    expect_refused("{\"quant_method\": \"gptq\", \"bits\": 4, \"group_size\": 64, \"checkpoint_format\": \"marlin\"}",
                   "checkpoint_format 'marlin' is not supported");
    expect_refused("{\"quant_method\": \"gptq\", \"bits\": 4, \"group_size\": 64, \"desc_act\": 1}",
                   "desc_act: expected a boolean");
    expect_refused("[]", "expected an object");
}

// A tensor over caller-owned data, as the safetensors reader would list it.
static cs_safetensors_tensor tensor(const char *dtype, int64_t rows, int64_t cols, const void *data, size_t esize) {
    cs_safetensors_tensor t;
    memset(&t, 0, sizeof t);
    t.name = "t";
    snprintf(t.dtype_name, sizeof t.dtype_name, "%s", dtype);
    t.n_dims = cols < 0 ? 1 : 2;
    t.shape[0] = rows;
    t.shape[1] = cols < 0 ? 0 : cols;
    t.n_elems = rows * (cols < 0 ? 1 : cols);
    t.data = data;
    t.nbytes = (size_t)t.n_elems * esize;
    return t;
}

enum { IN = 256, OUT = 24 };
static const int AWQ_ORDER[8] = {0, 2, 4, 6, 1, 3, 5, 7};

// Random codes, zeros (1..15, so that GPTQ v1's z - 1 fits) and fp16 scales, packed by hand
// the way each format's writer does; the repack must dequantise to s * (q - z) exactly.
static void check_repack(cs_hf_quant_method method, int group, bool v2) {
    static uint8_t q[OUT][IN], z[OUT][IN / 32];
    static uint16_t scales[IN / 32 * OUT];
    static uint32_t qweight[IN * OUT / 8], qzeros[IN / 32 * OUT / 8];
    static int32_t g_idx[IN];
    int ng = IN / group;
    for (int n = 0; n < OUT; n++) {
        for (int k = 0; k < IN; k++) q[n][k] = next_u32() & 15;
        for (int g = 0; g < ng; g++) z[n][g] = (uint8_t)(1 + next_u32() % 15);
    }
    for (int i = 0; i < ng * OUT; i++) // |s| in [2^-12, 2^3], either sign, 11 significant bits
        scales[i] = cs_f32_to_fp16((next_u32() & 1 ? -1.0f : 1.0f) * (float)(1024 + next_u32() % 1024) *
                                   ldexpf(1.0f, (int)(next_u32() % 16) - 22));
    memset(qweight, 0, sizeof qweight);
    memset(qzeros, 0, sizeof qzeros);
    bool gptq = method == CS_HF_QUANT_GPTQ;
    for (int n = 0; n < OUT; n++)
        for (int k = 0; k < IN; k++) {
            if (gptq) qweight[(k / 8) * OUT + n] |= (uint32_t)q[n][k] << 4 * (k % 8);
            else
                for (int i = 0; i < 8; i++)
                    if (AWQ_ORDER[i] == n % 8) qweight[k * (OUT / 8) + n / 8] |= (uint32_t)q[n][k] << 4 * i;
        }
    for (int g = 0; g < ng; g++)
        for (int n = 0; n < OUT; n++) {
            uint32_t zs = gptq && !v2 ? z[n][g] - 1u : z[n][g];
            if (gptq) qzeros[g * (OUT / 8) + n / 8] |= zs << 4 * (n % 8);
            else
                for (int i = 0; i < 8; i++)
                    if (AWQ_ORDER[i] == n % 8) qzeros[g * (OUT / 8) + n / 8] |= zs << 4 * i;
        }
    for (int k = 0; k < IN; k++) g_idx[k] = k / group;
    cs_safetensors_tensor tw = gptq ? tensor("I32", IN / 8, OUT, qweight, 4) : tensor("I32", IN, OUT / 8, qweight, 4);
    cs_safetensors_tensor tz = tensor("I32", ng, OUT / 8, qzeros, 4), ts = tensor("F16", ng, OUT, scales, 2);
    cs_safetensors_tensor tg = tensor("I32", IN, -1, g_idx, 4);
    cs_hf_quant hq = {method, 4, group, gptq, v2};
    cs_hf_quant_parts parts = {&tw, &tz, &ts, gptq ? &tg : NULL};
    void *data = NULL;
    size_t nbytes = 0;
    char err[CS_ERR_LEN] = "";
    const char *label = gptq ? (v2 ? "gptq_v2" : "gptq") : "awq";
    cs_status s = cs_hf_quant_repack(&hq, "layer", &parts, IN, OUT, &data, &nbytes, err, sizeof err);
    TEST_CONDF(s == CS_OK, "%s g%d: %s", label, group, err);
    if (s != CS_OK) return;
    cs_dtype t = cs_dtype_int4_exact(group);
    size_t rb;
    TEST_COND(cs_dtype_row_bytes(t, IN, &rb) && nbytes == rb * OUT);
    int differ = 0;
    for (int n = 0; n < OUT; n++) {
        float row[IN];
        cs_cpu_dequant_row(t, (const unsigned char *)data + (size_t)n * rb, row, IN);
        for (int k = 0; k < IN; k++) {
            float want = cs_fp16_to_f32(scales[(k / group) * OUT + n]) * (float)(q[n][k] - z[n][k / group]);
            // bit for bit, but for the sign of zero: q == z gives s * 0 = -0 for a negative
            // s, and d * q + m = +0
            differ += want == 0 ? row[k] != 0 : memcmp(&want, &row[k], 4) != 0;
        }
    }
    TEST_CONDF(differ == 0, "%s g%d: %d of %d weights differ from s * (q - z)", label, group, differ, IN * OUT);
    free(data);

    // Refusals, each from one part changed.
    struct { cs_hf_quant_parts p; cs_hf_quant q; const char *message; } bad[] = {
        {{&tw, NULL, &ts, NULL}, hq, "'layer.qzeros' is missing"},
        {{&tw, &tz, &tz, NULL}, hq, "'layer.scales' has dtype I32, expected F16"},
        {{&tz, &tz, &ts, NULL}, hq, "'layer.qweight' has shape"},
        {{&tw, &ts, &ts, NULL}, hq, "'layer.qzeros' has dtype F16"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        s = cs_hf_quant_repack(&bad[i].q, "layer", &bad[i].p, IN, OUT, &data, &nbytes, err, sizeof err);
        TEST_CONDF(s != CS_OK && data == NULL && strstr(err, bad[i].message), "%s g%d: '%s', expected '%s'", label,
                   group, err, bad[i].message);
    }
    s = cs_hf_quant_repack(&hq, "layer", &parts, IN, OUT + 8, &data, &nbytes, err, sizeof err);
    TEST_CONDF(s != CS_OK && strstr(err, "has shape"), "%s: config's outputs differ: '%s'", label, err);
    if (!gptq) return;
    int32_t swapped = g_idx[0]; // act-order: the first and last inputs' groups exchanged
    g_idx[0] = g_idx[IN - 1];
    g_idx[IN - 1] = swapped;
    s = cs_hf_quant_repack(&hq, "layer", &parts, IN, OUT, &data, &nbytes, err, sizeof err);
    TEST_CONDF(s != CS_OK && strstr(err, "act-order (desc_act) GPTQ checkpoints are not supported"), "%s", err);
    parts.g_idx = NULL; // desc_act true and no g_idx: the order is unknown
    s = cs_hf_quant_repack(&hq, "layer", &parts, IN, OUT, &data, &nbytes, err, sizeof err);
    TEST_CONDF(s != CS_OK && strstr(err, "act-order"), "%s", err);
    hq.desc_act = false; // desc_act false and no g_idx: groups in order
    s = cs_hf_quant_repack(&hq, "layer", &parts, IN, OUT, &data, &nbytes, err, sizeof err);
    TEST_CONDF(s == CS_OK, "%s", err);
    free(data);
}

int main(void) {
    test_parse();
    for (int group = 32; group <= 128; group *= 2) {
        check_repack(CS_HF_QUANT_AWQ, group, false);
        check_repack(CS_HF_QUANT_GPTQ, group, false);
        check_repack(CS_HF_QUANT_GPTQ, group, true);
    }
    return TEST_REPORT();
}
