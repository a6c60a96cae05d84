/* Compiled as C89, C99 and C++ with -pedantic -Wall -Wextra -Werror: the header must be clean
 * in each, included twice too. */
#include <starttls.h>
#include <starttls.h>

#if !defined(STARTTLS_VERSION_NUMBER) || STARTTLS_VERSION_NUMBER < 100 || \
    STARTTLS_VERSION_NUM != STARTTLS_VERSION_NUMBER
#error "version macros missing"
#endif

int header_check(void);
int header_check(void) {
    starttls_config_builder *b = starttls_config_builder_new();
    bool yes = starttls_supports_protocol(STARTTLS_PROTO_SMTP);
    starttls_config_builder_free(b);
    return (int)STARTTLS_OK + (int)STARTTLS_PROTO_SMTP + (yes ? 1 : 0);
}
