"""The Socket.IO edge: the ``/unit`` and ``/console`` namespaces and the server-side pushes.

Namespaces parse each event into a typed message (:mod:`.messages`) and call a domain service;
:mod:`.push` is how the domain's events reach consoles and units (the domain receives its
bound methods, never the Socket.IO server).
"""
