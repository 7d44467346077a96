#ifndef TOKENKEEPER_CSQLITE_SHIM_H
#define TOKENKEEPER_CSQLITE_SHIM_H

#include <sqlite3.h>

// SQLITE_TRANSIENT is a macro casting -1 to a function pointer; Swift cannot
// import it, so expose it as a function.
static inline sqlite3_destructor_type tokenkeeper_sqlite_transient(void) {
    return SQLITE_TRANSIENT;
}

// sqlite3_file_control takes a void pointer; these wrappers keep the casts in C.
static inline int tokenkeeper_sqlite_persist_wal(sqlite3 *db, int on) {
    int value = on;
    return sqlite3_file_control(db, "main", SQLITE_FCNTL_PERSIST_WAL, &value);
}

// Variadic C functions are not callable from Swift.
static inline int tokenkeeper_sqlite_db_config_defensive(sqlite3 *db, int on) {
    return sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, on, (int *)0);
}

#endif
