{ alice = "ssh-ed25519 AAAAalice"; bob = "ssh-ed25519 AAAAbob"; }
