/* Compiled as C99 and as C++ with -Wall -Wextra -Werror: the header must be clean in both. */
#include <starttls.h>

#if !defined(STARTTLS_VERSION_NUMBER) || STARTTLS_VERSION_NUMBER < 100
#error "version macros missing"
#endif

int header_check(void);
int header_check(void) {
    starttls_config_builder *b = starttls_config_builder_new();
    starttls_config_builder_free(b);
    return (int)STARTTLS_OK + (int)STARTTLS_PROTO_SMTP;
}
