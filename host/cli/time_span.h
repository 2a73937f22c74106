// Durations on the command line, written as systemd writes them (systemd.time(7)):
// a bare number is seconds ("90", "1.5"); otherwise numbers each followed by a unit
// and summed, spaces allowed between them ("90s", "5min", "1h 30min", "2d"). Units:
// ms/msec, s/sec/second(s), m/min/minute(s), h/hr/hour(s), d/day(s), w/week(s).
// Anything else is refused, never read in part: "1x" or "1m5" is an InputError that
// names the option and shows the form.
#pragma once

#include <string_view>

namespace sprout {

/// Seconds. InputError naming `option` for a malformed span or one outside [0, max_seconds].
double parse_time_span(std::string_view text, std::string_view option, double max_seconds = 1e9);

}  // namespace sprout
