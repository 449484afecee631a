"""Model constructors by name: ``vidjax.models.registry.build(config.model)``."""
