{ pkgs ? null, keys ? [ "kf" ], ... }:
{
  "fn.age".publicKeys = keys;
  "fn2.age" = { publicKeys = keys; hasPkgs = pkgs != null; };
}
