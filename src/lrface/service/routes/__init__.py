"""The service's routes, one router per concern: the page and health, identities, search and
verify, video watch, and the admin's audit log. Each module's ``router(config)`` builds its
routes with the body limits of ``config``."""
