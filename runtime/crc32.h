/* CRC-32 (the ISO-HDLC / zlib polynomial, reflected 0xEDB88320): what .qm files end with.
 *
 * Usage:
 *     uint32_t crc = qd_crc32(0, blob, len - 4);       // equals zlib's crc32(0, blob, len - 4)
 *     crc = qd_crc32(crc, more, n);                     // continues a running CRC
 */
#ifndef QD_RUNTIME_CRC32_H
#define QD_RUNTIME_CRC32_H

#include <stddef.h>
#include <stdint.h>

uint32_t qd_crc32(uint32_t crc, const uint8_t *p, size_t n);

#endif
