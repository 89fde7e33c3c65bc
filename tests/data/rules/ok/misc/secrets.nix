let
  attrs = { a = 1; } // { b = 2; } // { a = 3; };
  list = [ 1 ] ++ [ 2 ] ++ [ ];
  url = https://example.org/x;
in
{
  "m.age" = {
    publicKeys = [ ];
    inherit attrs list url;
    neg = -(1 + 2);
    nul = null;
    "quoted key" = "q";
    nested.deeper.deepest = [ { } [ ] "" ];
    emptyStr = "";
    unicode = "héllo ✓";
    or = "or as name";
    comment = /* inline */ "c"; # trailing
  };
}
