/*
 * nightcore/worker_v1_interface.h — the former path of Gloam's copy of Nightcore's v1 C
 * interface; include <faas/worker_v1_interface.h>, where Nightcore's sources look for it.
 */
#include "../faas/worker_v1_interface.h"
