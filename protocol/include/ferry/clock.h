/* The monotonic clock in milliseconds: deadlines, pauses and elapsed times that a change of the
 * wall clock (NTP stepping a device's time at boot) must not stretch or cut short. */
#ifndef FERRY_CLOCK_H
#define FERRY_CLOCK_H

#include <stdint.h>

uint64_t fy_mono_ms(void);

#endif
