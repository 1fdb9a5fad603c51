/* A stand-in for libgupnp-igd-1.0.so.4 that says "no UPnP".
 *
 * Debian 12's whip-client links libsoup 2.4, while libnice links
 * libgupnp-igd, which pulls libgupnp-1.6 and libsoup 3: the two libsoups in
 * one process abort it at start ("libsoup2 symbols detected. Using libsoup2
 * and libsoup3 in the same process is not supported"). libnice only uses
 * gupnp-igd to ask a home router for UPnP port mappings, and treats a NULL
 * from gupnp_simple_igd_thread_new() as "UPnP unavailable", exactly as when
 * it is built without it. Put first on LD_LIBRARY_PATH, this file gives
 * whip-client that libnice, and nothing else changes. */
#include <stddef.h>

void *gupnp_simple_igd_thread_new(void) { return NULL; }
unsigned long gupnp_simple_igd_get_type(void) { return 0; }
void gupnp_simple_igd_add_port(void *igd, const char *protocol, unsigned external_port,
                               const char *local_ip, unsigned local_port, unsigned lease,
                               const char *description) {}
void gupnp_simple_igd_remove_port_local(void *igd, const char *protocol, const char *local_ip,
                                        unsigned local_port) {}
