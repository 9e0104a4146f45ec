/*
 * log.h - structured logging: a fixed message plus key=value pairs.
 *
 *   gw_log(GW_LOG_WARN, "upstream", "attempt timed out",
 *          "upstream", url, "timeout_ms", "2000", NULL);
 *
 * Values are strings (use gw_log_fmt helpers or snprintf into a stack buffer);
 * the list ends with NULL. Output goes to stderr as logfmt (default) or one
 * JSON object per line. Thread-safe: each line is one write(2).
 */
#ifndef GW_LOG_H
#define GW_LOG_H

enum { GW_LOG_ERROR = 0, GW_LOG_WARN = 1, GW_LOG_INFO = 2, GW_LOG_DEBUG = 3 };

void gw_log_setup(int level, int json);
int gw_log_level(void);
/* Parses "error|warn|info|debug"; -1 if unknown. */
int gw_log_level_parse(const char *s);
void gw_log(int level, const char *subsystem, const char *msg, ...)
	__attribute__((sentinel));

#endif
