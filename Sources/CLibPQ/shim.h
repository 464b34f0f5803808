#ifndef SUNDIAL_CLIBPQ_SHIM_H
#define SUNDIAL_CLIBPQ_SHIM_H
// libpq (libpq-dev). Only SundialPostgres imports this module.
#include <libpq-fe.h>
#endif
