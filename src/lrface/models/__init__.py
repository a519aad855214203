"""Face encoders (teacher and students), the discriminator, and the registry that names them."""
