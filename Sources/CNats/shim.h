#ifndef SUNDIAL_CNATS_SHIM_H
#define SUNDIAL_CNATS_SHIM_H
// cnats 3.4.1 (libnats-dev). Only SundialNATS imports this module.
#include <nats/nats.h>
#endif
