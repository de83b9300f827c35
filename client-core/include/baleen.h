/*
 * baleen.h — the C ABI of client-core, the Baleen on-device library.
 *
 * Written to match client-core/src/ffi/c.rs; a test checks that every function there is declared
 * here and nothing else. Link with libclient_core (cdylib or staticlib) built with the default
 * `builtin-fetcher` feature.
 *
 * Conventions (as rustls-ffi):
 *   - every function returns a baleen_result, BALEEN_OK (0) on success; on failure
 *     baleen_last_error() copies out what went wrong, for the calling thread;
 *   - objects are opaque; each one handed out is released with its baleen_*_free, once (a free
 *     leaves the last error as it was);
 *   - strings are NUL-terminated UTF-8; pointers are checked for NULL (BALEEN_NULL_ARGUMENT);
 *   - a panic never unwinds into C: it becomes BALEEN_PANIC;
 *   - functions that "block" do disk or network IO: call them from a background thread;
 *     baleen_client_resolve never waits on an install and may be called from any thread.
 */
#ifndef BALEEN_H
#define BALEEN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum baleen_result {
  BALEEN_OK = 0,
  BALEEN_NULL_ARGUMENT = 1,
  BALEEN_INVALID_ARGUMENT = 2,
  BALEEN_NETWORK = 3,      /* retry later; the active release keeps serving */
  BALEEN_VERIFICATION = 4, /* report it; the active release keeps serving */
  BALEEN_STORAGE = 5,      /* free space or report it */
  BALEEN_OTHER = 6,
  BALEEN_PANIC = 7,
  BALEEN_NOT_FOUND = 8,    /* resolve: no offline file, go to the network */
} baleen_result;

typedef struct baleen_client baleen_client;
typedef struct baleen_resolved baleen_resolved;

/*
 * Opens a client. config_json is an object:
 *   {"dir": "/app/files/baleen", "server": "https://updates.example.com", "app": "shop",
 *    "channel": "production", "device_id": "…", "host_version": "6.1.0",
 *    "public_keys": ["<64 hex>"], "threshold": 1, "max_pending_launches": 3,
 *    "custom_scheme": "baleen" (optional), "sequence_floor": 0 (optional),
 *    "ingest_key": "bik_…" (optional; without it no events are sent)}
 * On success *out is a client to free with baleen_client_free. Blocks (disk).
 */
baleen_result baleen_client_new(const char *config_json, baleen_client **out);

/* Frees a client; NULL is ignored. No other thread may be using it. */
void baleen_client_free(baleen_client *client);

/*
 * Checks the signed index and installs what the device's conditions allow now. conditions_json
 * is NULL (unmetered Wi-Fi, power and space) or an object:
 *   {"network": "wifi" | "cellular" | "offline", "metered": false, "battery_percent": 80,
 *    "charging": false, "low_power_mode": false, "free_space_bytes": 1073741824,
 *    "foreground": true}
 * *installed and *waiting (each may be NULL) receive how many packages were installed and how
 * many wait. Blocks (network, disk).
 */
baleen_result baleen_client_update(const baleen_client *client, const char *conditions_json,
                                   size_t *installed, size_t *waiting);

/* Copies the JSON report of this thread's last successful baleen_client_update into buf
 * (NUL-terminated, truncated to len bytes) and returns its full length:
 *   {"installed": [{"package", "from", "to", "method", "downloaded_bytes"}],
 *    "waiting": [{"package", "reason": "offline" | "wifi" | "charge" | "space" | "priority" |
 *                 "first_use" | "quota"}]} */
size_t baleen_last_update_report(char *buf, size_t len);

/* Call once per app launch: a release still pending after max_pending_launches launches is
 * rolled back as failed; *rolled_back (may be NULL) receives how many. Blocks (disk). */
baleen_result baleen_client_on_launch(const baleen_client *client, size_t *rolled_back);

/* Sends queued reports and open counters; *sent (may be NULL) receives how many events went.
 * On failure they stay queued. Blocks (network). */
baleen_result baleen_client_flush_events(const baleen_client *client, size_t *sent);

/* The file answering url (https or the custom scheme). On BALEEN_OK, *out is freed with
 * baleen_resolved_free; BALEEN_NOT_FOUND means go to the network. Never blocks. */
baleen_result baleen_client_resolve(const baleen_client *client, const char *url,
                                    baleen_resolved **out);

/* Getters of a resolve result; strings live until baleen_resolved_free. */
const char *baleen_resolved_path(const baleen_resolved *resolved);
const char *baleen_resolved_mime(const baleen_resolved *resolved);
uint64_t baleen_resolved_size(const baleen_resolved *resolved);

/* Frees a resolve result; NULL is ignored. */
void baleen_resolved_free(baleen_resolved *resolved);

/* The page of package works: its new release is no longer pending. Blocks (disk). */
baleen_result baleen_client_mark_ready(const baleen_client *client, const char *package);

/* The page of package failed: roll back and never install that release again. Blocks (disk). */
baleen_result baleen_client_report_failure(const baleen_client *client, const char *package);

/* Goes back to the previous release of package on the host's request. Blocks (disk). */
baleen_result baleen_client_rollback(const baleen_client *client, const char *package);

/* Installs a release shipped inside the app: its signed manifest and full pack, as the server
 * serves them at build time; both are verified. Blocks (disk). */
baleen_result baleen_client_seed(const baleen_client *client, const uint8_t *manifest,
                                 size_t manifest_len, const uint8_t *full_pack,
                                 size_t full_pack_len);

/* Counts a page open (for the offline-hit and under-one-second rates). Never blocks on IO. */
baleen_result baleen_client_report_open(const baleen_client *client, const char *url,
                                        uint64_t ms_to_first_paint);

/* Copies this thread's last error message (empty after a success), cut to fit and
 * NUL-terminated, into buf of len bytes; returns the message's full length. buf may be NULL. */
size_t baleen_last_error(char *buf, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* BALEEN_H */
