/*
 * The lookups an MTA makes before starttls_connect_dane, from C: the TLSA records of a
 * destination whose addresses and records are DNSSEC-validated (and of one whose are not), a
 * failed lookup, a domain without MTA-STS, and NULL handling.
 *
 * usage: lookup RESOLVER SECURE_RESOLVER
 *   RESOLVER: ADDR:PORT of a scripted resolver answering without AD; SECURE_RESOLVER: the same
 *   records with AD. Both know mx.test (A 127.0.0.1, TLSA for port 25) and nothing else.
 *   Prints "N passed, M failed"; exits non-zero on any failure.
 */
#include <stdio.h>
#include <string.h>

#include <starttls.h>

static int passed, failed;

#define CHECK(cond)                                                   \
    do {                                                              \
        if (cond) {                                                   \
            passed++;                                                 \
        } else {                                                      \
            failed++;                                                 \
            fprintf(stderr, "%s:%d: FAILED: %s\n", __FILE__, __LINE__, #cond); \
        }                                                             \
    } while (0)

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: lookup RESOLVER SECURE_RESOLVER\n");
        return 2;
    }
    const char *insecure = argv[1], *secure = argv[2];
    starttls_tlsa_set *set = NULL;
    bool applies = true;

    /* Validated: the records come, and DANE applies. */
    CHECK(starttls_lookup_tlsa(secure, "mx.test", 25, 5000, &set, &applies) == STARTTLS_OK);
    CHECK(applies);
    CHECK(starttls_tlsa_set_count(set) == 1);
    starttls_tlsa_set_free(set);

    /* Not validated: an empty set, DANE does not apply. */
    set = NULL;
    CHECK(starttls_lookup_tlsa(insecure, "mx.test", 25, 5000, &set, &applies) == STARTTLS_OK);
    CHECK(!applies);
    CHECK(set != NULL && starttls_tlsa_set_count(set) == 0);
    starttls_tlsa_set_free(set);

    /* A host without addresses: the lookup fails (closed), outputs untouched. */
    set = NULL;
    applies = true;
    CHECK(starttls_lookup_tlsa(secure, "nothing.test", 25, 5000, &set, &applies) ==
          STARTTLS_ERR_RESOLVE);
    CHECK(set == NULL && applies);
    char msg[256];
    CHECK(starttls_last_error(msg, sizeof msg) > 0 && strstr(msg, "nothing.test"));

    /* A resolver that is not an address; NULL arguments. */
    CHECK(starttls_lookup_tlsa("not an address", "mx.test", 25, 5000, &set, &applies) ==
          STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_lookup_tlsa(secure, NULL, 25, 5000, &set, &applies) ==
          STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_lookup_tlsa(secure, "mx.test", 25, 5000, NULL, &applies) ==
          STARTTLS_ERR_INVALID_ARGUMENT);

    /* MTA-STS: mx.test has no _mta-sts record, so no policy (and nothing fetched). */
    starttls_config_builder *b = starttls_config_builder_new();
    const starttls_config *config = NULL;
    CHECK(starttls_config_builder_build(b, &config) == STARTTLS_OK);
    starttls_mta_sts *sts = NULL;
    CHECK(starttls_mta_sts_lookup(config, secure, "mx.test", 5000, &sts) == STARTTLS_OK);
    CHECK(starttls_mta_sts_mode(sts) == STARTTLS_MTA_STS_NO_POLICY);
    CHECK(starttls_mta_sts_max_age(sts) == 0);
    CHECK(starttls_mta_sts_id(sts, msg, sizeof msg) == 0 && msg[0] == '\0');
    CHECK(!starttls_mta_sts_allows(sts, "mx.test"));
    starttls_mta_sts_free(sts);
    CHECK(starttls_mta_sts_lookup(NULL, secure, "mx.test", 5000, &sts) ==
          STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_mta_sts_lookup(config, secure, "mx.test", 5000, NULL) ==
          STARTTLS_ERR_INVALID_ARGUMENT);
    CHECK(starttls_mta_sts_mode(NULL) == STARTTLS_MTA_STS_NO_POLICY);
    CHECK(!starttls_mta_sts_allows(NULL, "mx.test"));
    starttls_mta_sts_free(NULL);
    starttls_config_free(config);

    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
