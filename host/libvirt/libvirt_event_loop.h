// libvirt's default event loop, running in a thread of its own for the life of the
// process. sprout reads a domain's status channel and console through libvirt streams
// (libvirt_stream.h), and libvirt needs an event loop for two things there: stream
// events (a non-blocking stream says "readable" through it) and keepalive (the only
// way a client notices a connection whose peer went silent: a remote host gone from the
// network, a libvirtd that hangs). Without keepalive a stream read on a dead TCP
// connection waits for the kernel's retransmission timeout, ~15 minutes.
//
// Why a thread running virEventRunDefaultImpl, and not libvirt's events folded into
// the supervisor's own poll loop (virEventRegisterImpl with our callbacks): libvirt's
// default implementation is what virsh uses and is tested with keepalive; an
// implementation of our own would be a second event loop to get right (timers,
// handle updates from other threads). The cost is one thread that only ever wakes
// our poll loop (libvirt_stream.h writes an eventfd from its callbacks); every libvirt
// call that reads or writes data is made from the caller's thread.
//
// Call start_libvirt_event_loop() before opening a connection that is to have streams
// or keepalive: libvirt's remote driver registers a connection's socket with the event
// loop only when one is registered at virConnectOpen. The thread never ends (it sleeps
// in poll when there is nothing to do); it touches nothing of sprout's once the objects
// that registered callbacks are gone (they remove them in their destructors, and
// libvirt frees the callbacks' data only when no callback runs).
#pragma once

namespace sprout {

/// Registers libvirt's default event loop and starts its thread, once per process;
/// thread-safe. Throws LibvirtError when libvirt cannot be loaded or registers nothing.
void start_libvirt_event_loop();

}  // namespace sprout
