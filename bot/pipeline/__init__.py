"""Pipeline stages: feed -> entry -> article -> story -> digest -> delivery."""
