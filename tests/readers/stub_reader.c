/*
 * A stub of the sector's card-reader libraries, for the tests.
 *
 * It exports the symbols the agent calls (SSCardDriver: iReadCardBas, iVerifyPIN,
 * iGetReaderInfo, iReadCardBas_HSM_Step1/Step2; NHSA HeaSecReadInfo: Init,
 * ReadCardBas, VerifyPIN, ReadSFZ; NationECCode: NationEcTrans) with the same C
 * signatures, and behaves like a reader with a PIN pad: a card is in it or not,
 * the "customer" types the right or a wrong PIN (the stub plays keypad and chip
 * and counts the tries), the reader can be unplugged, a call can hang, the
 * output can be garbage, non-GBK bytes, or miss a field.
 *
 * Tests steer it through stub_set(key, value) and read it through stub_get(key).
 * The card text is set as raw bytes (GBK, as a real library hands it back).
 * No PIN digit is ever exchanged with the host: the test only says whether the
 * customer types the right PIN ("pin_entry" = correct | wrong | cancel | none,
 * or a list such as "wrong,correct", one entry per iVerifyPIN, the last repeating).
 *
 * Build: cc -shared -fPIC -o libstubreader.so stub_reader.c -lpthread
 * -DSTUB_OMIT_VERIFY leaves iVerifyPIN out (a library with a missing symbol).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _WIN32
#include <windows.h>
#define API __declspec(dllexport) long __stdcall
#define CTL __declspec(dllexport)
static void stub_sleep_ms(int ms) { Sleep(ms); }
static CRITICAL_SECTION g_cs;
static int g_cs_ready = 0;
static void lock(void) { if (!g_cs_ready) { InitializeCriticalSection(&g_cs); g_cs_ready = 1; } EnterCriticalSection(&g_cs); }
static void unlock(void) { LeaveCriticalSection(&g_cs); }
#else
#include <pthread.h>
#include <time.h>
#define API long
#define CTL
static void stub_sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static void lock(void) { pthread_mutex_lock(&g_mu); }
static void unlock(void) { pthread_mutex_unlock(&g_mu); }
#endif

#define CARD_MAX 1024

/* ------------------------------------------------------------------ state */
static int g_plugged = 1;            /* reader connected */
static int g_present = 0;            /* card in the reader */
static char g_card[CARD_MAX] = "";   /* the 11 fields as the library returns them (raw bytes) */
static char g_sfz[CARD_MAX] = "";    /* the 9 ID-card fields */
static char g_mode[32] = "ok";       /* ok | garbage | nongbk | hsm | notssc | mute */
static char g_pin_entry[128] = "none"; /* what the customer does, per verify: correct | wrong | cancel | none, or a comma list */
static int g_tries = 3;              /* the chip's PIN try counter */
static int g_hang_ms = 0;            /* the next call (of g_hang_fn) sleeps this long */
static char g_hang_fn[32] = "";      /* which function hangs, "" = any */
static int g_release = 0;            /* ends a running hang early */
static char g_voucher[2048] = "";    /* the decoded voucher answer's data JSON; "" = nobody scans */
static int g_scan_wait_ms = 200;     /* how long NationEcTrans waits for a scan */
static char g_last_ec_in[4096] = ""; /* what NationEcTrans was asked */
static char g_last_init[4096] = "";  /* what Init was given */
static int g_calls = 0, g_inits = 0, g_reads = 0, g_pins = 0, g_infos = 0, g_ec = 0;
static int g_in_card = 0, g_max_in_card = 0; /* concurrent calls into the card functions */

static void enter_card(void) {
    lock();
    g_calls++;
    g_in_card++;
    if (g_in_card > g_max_in_card) g_max_in_card = g_in_card;
    unlock();
}
static void leave_card(void) { lock(); g_in_card--; unlock(); }

/* Sleep if this function is set to hang; a hang is used once. */
static void maybe_hang(const char *fn) {
    int ms = 0;
    lock();
    if (g_hang_ms > 0 && (g_hang_fn[0] == 0 || strcmp(g_hang_fn, fn) == 0)) {
        ms = g_hang_ms;
        g_hang_ms = 0;
        g_release = 0;
    }
    unlock();
    while (ms > 0) {
        int r;
        lock(); r = g_release; unlock();
        if (r) break;
        stub_sleep_ms(10);
        ms -= 10;
    }
}

static void copy_out(char *out, const char *text) { strcpy(out, text); }

/* ------------------------------------------------------------------ control */
CTL void stub_set(const char *key, const char *value) {
    lock();
    if (!strcmp(key, "plugged")) g_plugged = atoi(value);
    else if (!strcmp(key, "present")) g_present = atoi(value);
    else if (!strcmp(key, "card")) { strncpy(g_card, value, CARD_MAX - 1); g_card[CARD_MAX - 1] = 0; }
    else if (!strcmp(key, "sfz")) { strncpy(g_sfz, value, CARD_MAX - 1); g_sfz[CARD_MAX - 1] = 0; }
    else if (!strcmp(key, "mode")) { strncpy(g_mode, value, sizeof g_mode - 1); }
    else if (!strcmp(key, "pin_entry")) { strncpy(g_pin_entry, value, sizeof g_pin_entry - 1); }
    else if (!strcmp(key, "tries")) g_tries = atoi(value);
    else if (!strcmp(key, "hang_ms")) g_hang_ms = atoi(value);
    else if (!strcmp(key, "hang_fn")) { strncpy(g_hang_fn, value, sizeof g_hang_fn - 1); }
    else if (!strcmp(key, "release")) g_release = 1;
    else if (!strcmp(key, "voucher")) { strncpy(g_voucher, value, sizeof g_voucher - 1); }
    else if (!strcmp(key, "scan_wait_ms")) g_scan_wait_ms = atoi(value);
    else if (!strcmp(key, "reset")) {
        g_plugged = 1; g_present = 0; g_card[0] = 0; g_sfz[0] = 0; strcpy(g_mode, "ok");
        strcpy(g_pin_entry, "none"); g_tries = 3; g_hang_ms = 0; g_hang_fn[0] = 0; g_release = 1;
        g_voucher[0] = 0; g_scan_wait_ms = 200; g_last_ec_in[0] = 0; g_last_init[0] = 0;
        g_calls = g_inits = g_reads = g_pins = g_infos = g_ec = 0; g_max_in_card = 0;
    }
    unlock();
}

/* Integer state for assertions: calls, inits, reads, pins, infos, ec, max_in_card, tries. */
CTL int stub_get(const char *key) {
    int v = -1;
    lock();
    if (!strcmp(key, "calls")) v = g_calls;
    else if (!strcmp(key, "inits")) v = g_inits;
    else if (!strcmp(key, "reads")) v = g_reads;
    else if (!strcmp(key, "pins")) v = g_pins;
    else if (!strcmp(key, "infos")) v = g_infos;
    else if (!strcmp(key, "ec")) v = g_ec;
    else if (!strcmp(key, "max_in_card")) v = g_max_in_card;
    else if (!strcmp(key, "tries")) v = g_tries;
    else if (!strcmp(key, "in_card")) v = g_in_card;
    unlock();
    return v;
}

/* Text state for assertions: "ec_in" (the last NationEcTrans request), "init" (Init's JSON). */
CTL const char *stub_text(const char *key) {
    if (!strcmp(key, "ec_in")) return g_last_ec_in;
    if (!strcmp(key, "init")) return g_last_init;
    return "";
}

/* ------------------------------------------------------------------ the card */
/* Return codes of this stub: the table docs/readers.md documents (and assumes). */
#define RC_OK 0
#define RC_NOT_CONNECTED -1
#define RC_NO_CARD -2
#define RC_CARD_MUTE -3
#define RC_NOT_SSC -4
#define RC_PIN_WRONG -5
#define RC_PIN_BLOCKED -6
#define RC_PIN_CANCELLED -7
#define RC_PIN_TIMEOUT -8
#define RC_NEEDS_HSM -2201

static long read_basic(char *out) {
    if (!g_plugged) { copy_out(out, "\xb6\xc1\xbf\xa8\xc6\xf7\xce\xb4\xc1\xac\xbd\xd3"); return RC_NOT_CONNECTED; } /* 读卡器未连接 */
    if (!g_present) { copy_out(out, "\xce\xb4\xb2\xe5\xbf\xa8"); return RC_NO_CARD; } /* 未插卡 */
    if (!strcmp(g_mode, "mute")) { out[0] = 0; return RC_CARD_MUTE; }
    if (!strcmp(g_mode, "notssc")) { out[0] = 0; return RC_NOT_SSC; }
    if (!strcmp(g_mode, "garbage")) { copy_out(out, "\x01\x02garbage-without-fields"); return RC_OK; }
    if (!strcmp(g_mode, "nongbk")) { copy_out(out, "639900|\xff\xff\xff|"); return RC_OK; }
    if (!strcmp(g_mode, "hsm")) { out[0] = 0; return RC_NEEDS_HSM; }
    copy_out(out, g_card);
    return RC_OK;
}

API iReadCardBas(int iType, char *pOutInfo) {
    long rc;
    (void)iType;
    enter_card();
    lock(); g_reads++; unlock();
    maybe_hang("iReadCardBas");
    lock(); rc = read_basic(pOutInfo); unlock();
    leave_card();
    return rc;
}

API iReadCardBas_HSM_Step1(int iType, char *pOutInfo) {
    (void)iType;
    enter_card();
    lock();
    if (!g_present) { unlock(); leave_card(); return RC_NO_CARD; }
    /* aab301|aaz507|aaa254|aaz501|aaa311|aaa312|aaa313|aaa314| */
    copy_out(pOutInfo, "110105|0090AA01|03|110105D15600000500BF7C7A48FB4966|R1|R2|R3|R4|");
    unlock();
    leave_card();
    return RC_OK;
}

API iReadCardBas_HSM_Step2(char *pKey, char *pOutInfo) {
    long rc = RC_OK;
    enter_card();
    lock();
    if (strcmp(pKey, "AUTH315|AUTH316|") != 0) { pOutInfo[0] = 0; rc = -2202; }
    else copy_out(pOutInfo, g_card);
    unlock();
    leave_card();
    return rc;
}

/* The customer's next action: the first of a comma list ("wrong,correct"); the last repeats. */
static void next_entry(char *entry, size_t size) {
    char *comma = strchr(g_pin_entry, ',');
    size_t n = comma ? (size_t)(comma - g_pin_entry) : strlen(g_pin_entry);
    if (n >= size) n = size - 1;
    memcpy(entry, g_pin_entry, n);
    entry[n] = 0;
    if (comma) memmove(g_pin_entry, comma + 1, strlen(comma + 1) + 1);
}

static long verify(char *out) {
    long rc;
    char buf[64], entry[16];
    maybe_hang("iVerifyPIN");
    lock();
    g_pins++;
    next_entry(entry, sizeof entry);
    if (!g_plugged) { out[0] = 0; rc = RC_NOT_CONNECTED; }
    else if (!g_present) { out[0] = 0; rc = RC_NO_CARD; }
    else if (g_tries <= 0) { copy_out(out, "6983"); rc = RC_PIN_BLOCKED; }
    else if (!strcmp(entry, "correct")) { g_tries = 3; copy_out(out, "9000"); rc = RC_OK; }
    else if (!strcmp(entry, "wrong")) {
        g_tries--;
        if (g_tries == 0) { copy_out(out, "63C0"); rc = RC_PIN_BLOCKED; }
        else { sprintf(buf, "63C%d", g_tries); copy_out(out, buf); rc = RC_PIN_WRONG; }
    }
    else if (!strcmp(entry, "cancel")) { out[0] = 0; rc = RC_PIN_CANCELLED; }
    else { out[0] = 0; rc = RC_PIN_TIMEOUT; }
    unlock();
    return rc;
}

#ifndef STUB_OMIT_VERIFY
API iVerifyPIN(int iType, char *pOutInfo) {
    long rc;
    (void)iType;
    enter_card();
    rc = verify(pOutInfo);
    leave_card();
    return rc;
}
#endif

API iGetReaderInfo(char *pReaderSN, char *pPsamTermNo) {
    long rc = RC_OK;
    enter_card();
    lock();
    g_infos++;
    if (!g_plugged) { pReaderSN[0] = 0; pPsamTermNo[0] = 0; rc = RC_NOT_CONNECTED; }
    else { copy_out(pReaderSN, "STUB-RDR-0001"); copy_out(pPsamTermNo, "110105000001"); }
    unlock();
    maybe_hang("iGetReaderInfo");
    leave_card();
    return rc;
}

/* ------------------------------------------------------------------ NHSA HeaSecReadInfo */
API Init(char *pInitInfo, char *pErrMsg) {
    long rc = RC_OK;
    enter_card();
    lock();
    g_inits++;
    strncpy(g_last_init, pInitInfo, sizeof g_last_init - 1);
    if (!g_plugged) { copy_out(pErrMsg, "reader not connected"); rc = RC_NOT_CONNECTED; }
    else pErrMsg[0] = 0;
    unlock();
    leave_card();
    return rc;
}

API ReadCardBas(char *pCardInfo, char *pBusiCardInfo) {
    long rc;
    enter_card();
    lock(); g_reads++; unlock();
    maybe_hang("ReadCardBas");
    lock();
    rc = read_basic(pCardInfo);
    copy_out(pBusiCardInfo, rc == RC_OK ? "{\"busi\":\"opaque\"}" : "");
    unlock();
    leave_card();
    return rc;
}

API VerifyPIN(char *pOutBuff) {
    long rc;
    enter_card();
    rc = verify(pOutBuff);
    leave_card();
    return rc;
}

API ReadSFZ(char *pPath, char *pOutInfo, char *pBusiInfo) {
    long rc = RC_OK;
    (void)pPath;
    enter_card();
    lock();
    if (!g_plugged) rc = RC_NOT_CONNECTED;
    else if (!g_sfz[0]) rc = RC_NO_CARD;
    else { copy_out(pOutInfo, g_sfz); copy_out(pBusiInfo, "{}"); }
    unlock();
    leave_card();
    return rc;
}

/* ------------------------------------------------------------------ NationECCode */
API NationEcTrans(char *strUrl, char *pInData, char *pOutData) {
    int waited = 0, wait_ms;
    (void)strUrl;
    lock();
    g_ec++;
    strncpy(g_last_ec_in, pInData, sizeof g_last_ec_in - 1);
    wait_ms = g_scan_wait_ms;
    unlock();
    maybe_hang("NationEcTrans");
    for (;;) {
        lock();
        if (g_voucher[0]) {
            /* the answer's data is a JSON *string*, as the platform sends it */
            sprintf(pOutData, "{\"code\":0,\"message\":\"ok\",\"orgId\":\"H11010500001\",\"data\":\"%s\"}",
                    g_voucher);
            g_voucher[0] = 0;
            unlock();
            return 0;
        }
        unlock();
        if (waited >= wait_ms) break;
        stub_sleep_ms(10);
        waited += 10;
    }
    copy_out(pOutData, "{\"code\":-2,\"message\":\"no code scanned\",\"data\":\"\"}");
    return -2;
}
