"""The Flower app: a private participation query, then DP-SGD updates summed through SecAgg+.

Flower-facing code lives in ``client_app``, ``server_app``, ``strategy`` and ``workflow``; the
node's decisions (consent, budget, training, caching a released update) live in ``node``, which
has no Flower dependency and is tested on its own.
"""
