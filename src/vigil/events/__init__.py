"""Domain events: the typed, versioned union (:mod:`vigil.events.schemas`) that the pipeline emits,
the sinks store or forward, and the server's bus, SSE, webhooks and MQTT carry."""
