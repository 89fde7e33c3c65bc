# The string `age.placeholder.<name>` yields for secret `name`: the installer replaces it in
# templates by the secret's plaintext (see src/install/manifest.rs, PLACEHOLDER_PREFIX).
name: "<RAGENIX:PLACEHOLDER:${name}>"
