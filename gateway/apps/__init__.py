"""The App layer: tenants and API keys, apps (prompt + datasets + model) with
retrieval-augmented chat, rate limits, usage records and the audit log.

`runtime.AppLayer` wires it into the gateway: the App servicer, the access
interceptor (auth -> role -> limits -> usage) and the store behind both.
"""
