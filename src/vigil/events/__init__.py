"""Domain events: the typed, versioned union (:mod:`vigil.events.schemas`) the pipeline emits, the sinks store or forward, and the server's bus, SSE, webhooks and MQTT carry."""
