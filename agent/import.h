/* ferryd --import FILE[:REF]: installs a bundle (an oci-archive, as ferry bundle writes it) on the
 * device itself, without a pusher, for sites with no network to the laptop.
 *
 * The running ferryd does the install, through the same conversation a pusher has with it (plan,
 * the blobs it lacks, commit, result), on its local socket STATE_DIR/ferryd.sock instead of TLS:
 * the same signature policy (require_signature, trust keys, expiry, no downgrade), the same limits
 * and the same rollback apply. This side only reads the archive: the variant for this node's
 * platform, the signature artifact (tag sha256-<hex>.sig) and the layers, streamed from the file
 * as ferryd asks for them. Every image the bundle holds is installed, or the one REF names. */
#ifndef FERRY_AGENT_IMPORT_H
#define FERRY_AGENT_IMPORT_H

#include "config.h"
#include "facts.h"

/* Prints one line per image installed and the reasons for those that were not. Returns the exit
 * status: 0 when every image is deployed or unchanged, 1 otherwise, 2 for a malformed name. */
int fy_import_main(const fy_agent_config *cfg, const fy_facts *facts, const char *spec, const char *app_override, int force);

#endif
