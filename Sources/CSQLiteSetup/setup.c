#include "CSQLiteSetup.h"
#include <sqlite3.h>

int hookbus_sqlite_set_defensive(void *connection, int on, int *previous) {
    int was = 0;
    int code = sqlite3_db_config((sqlite3 *)connection, SQLITE_DBCONFIG_DEFENSIVE, -1, &was);
    if (code != SQLITE_OK) return code;
    if (previous) *previous = was;
    return sqlite3_db_config((sqlite3 *)connection, SQLITE_DBCONFIG_DEFENSIVE, on, &was);
}

int hookbus_sqlite_disable_memstatus(void) {
    return sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}
