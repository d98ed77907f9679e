"""The fleet: cameras run on edge machines (a pole, a site's box) and send their events to the server.

- :mod:`vigil.fleet.devices`: the server's register of devices (add, pair with a one-time token,
  authenticate, revoke, heartbeats) and :mod:`vigil.fleet.config`, what a device must run (its
  cameras, the galleries allowed at its site, their templates unless the site keeps none).
- the worker (``vigil worker``): pairs once, mirrors its configuration, runs its cameras.
- the transport: an on-disk outbox on the device, NATS JetStream between device and server, and the
  server's consumer that stores what arrives, once.
"""
