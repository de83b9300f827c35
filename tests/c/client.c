/*
 * A C host of the Baleen library: opens a client, installs from a live server, resolves a URL
 * and checks the bytes, and checks that bad calls are refused with a message.
 *
 * Usage: client CONFIG_JSON URL EXPECTED_FILE
 * Exits 0 when every check passed; prints the failed check otherwise.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baleen.h"

static int failures = 0;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      char msg[256];                                                           \
      baleen_last_error(msg, sizeof msg);                                      \
      fprintf(stderr, "%s:%d: check failed: %s (last error: %s)\n", __FILE__,  \
              __LINE__, #cond, msg);                                           \
      failures++;                                                              \
    }                                                                          \
  } while (0)

static char *read_file(const char *path, long *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  *len = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc(*len > 0 ? *len : 1);
  if (buf && fread(buf, 1, *len, f) != (size_t)*len) {
    free(buf);
    buf = NULL;
  }
  fclose(f);
  return buf;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: client CONFIG_JSON URL EXPECTED_FILE\n");
    return 2;
  }
  baleen_client *client = NULL;
  CHECK(baleen_client_new(argv[1], &client) == BALEEN_OK);
  if (!client) return 1;

  baleen_resolved *resolved = NULL;
  CHECK(baleen_client_resolve(client, argv[2], &resolved) == BALEEN_NOT_FOUND);
  CHECK(resolved == NULL);

  /* Offline: nothing is installed, and the report says so. */
  size_t installed = 99, waiting = 99;
  CHECK(baleen_client_update(client, "{\"network\": \"offline\", \"metered\": false, "
                             "\"battery_percent\": 50, \"charging\": false, "
                             "\"low_power_mode\": false, \"free_space_bytes\": 1000000000, "
                             "\"foreground\": true}", &installed, &waiting) == BALEEN_OK);
  CHECK(installed == 0);
  CHECK(baleen_client_update(client, "{\"network\": \"wifi\"}", &installed, &waiting)
        == BALEEN_INVALID_ARGUMENT);

  CHECK(baleen_client_update(client, "{\"network\": \"wifi\", \"metered\": false, "
                             "\"battery_percent\": 50, \"charging\": false, "
                             "\"low_power_mode\": false, \"free_space_bytes\": 1000000000, "
                             "\"foreground\": true}", &installed, &waiting) == BALEEN_OK);
  CHECK(installed == 1);
  CHECK(waiting == 0);
  char report[1024];
  size_t report_len = baleen_last_update_report(report, sizeof report);
  CHECK(report_len > 0 && report_len < sizeof report);
  CHECK(strstr(report, "\"installed\":[{\"package\":") != NULL);
  CHECK(strstr(report, "\"method\":\"full_pack\"") != NULL || strstr(report, "\"method\":\"blobs\"") != NULL);

  CHECK(baleen_client_resolve(client, argv[2], &resolved) == BALEEN_OK);
  if (resolved) {
    long got_len = 0, want_len = 0;
    char *got = read_file(baleen_resolved_path(resolved), &got_len);
    char *want = read_file(argv[3], &want_len);
    CHECK(got != NULL && want != NULL);
    CHECK(got_len == want_len);
    CHECK(baleen_resolved_size(resolved) == (uint64_t)want_len);
    CHECK(got && want && got_len == want_len && memcmp(got, want, want_len) == 0);
    CHECK(strncmp(baleen_resolved_mime(resolved), "text/html", 9) == 0);
    free(got);
    free(want);
    baleen_resolved_free(resolved);
  }

  size_t rolled_back = 99;
  CHECK(baleen_client_on_launch(client, &rolled_back) == BALEEN_OK);
  CHECK(rolled_back == 0); /* pending for one launch: within max_pending_launches */
  CHECK(baleen_client_report_open(client, argv[2], 120) == BALEEN_OK);
  CHECK(baleen_client_mark_ready(client, "checkout") == BALEEN_OK);
  size_t sent = 0;
  CHECK(baleen_client_flush_events(client, &sent) == BALEEN_OK);
  CHECK(sent >= 3); /* installed, activated, ready, and the open counters */

  /* Bad calls: refused, with a message saying what was wrong. */
  char msg[256];
  CHECK(baleen_client_mark_ready(client, "Not A Package!") == BALEEN_INVALID_ARGUMENT);
  CHECK(baleen_last_error(msg, sizeof msg) > 0);
  CHECK(baleen_client_mark_ready(client, NULL) == BALEEN_NULL_ARGUMENT);
  baleen_last_error(msg, sizeof msg);
  CHECK(strcmp(msg, "package is NULL") == 0);
  CHECK(baleen_client_seed(client, (const uint8_t *)"x", 1, NULL, 0) == BALEEN_VERIFICATION);
  CHECK(baleen_client_rollback(client, "checkout") == BALEEN_OTHER);
  baleen_last_error(msg, sizeof msg);
  CHECK(strstr(msg, "no previous release") != NULL);
  CHECK(baleen_client_new("{not json", &client) == BALEEN_INVALID_ARGUMENT);

  baleen_client_free(client);
  if (failures == 0) printf("c client: all checks passed\n");
  return failures == 0 ? 0 : 1;
}
