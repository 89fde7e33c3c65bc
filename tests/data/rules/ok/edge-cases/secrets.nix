let
  x = { a = 1; };
  inherit (x) a;
  n = "b c";
  s = { "b c" = { d = 2; }; Z = 0; a = 0; "é" = 0; _ = 0; "0" = 0; };
  tab = "\t";
in
rec {
  "e.age" = {
    publicKeys = [ ];
    inh = a;
    sel = [ s.${n}.d s."b c".d (s.${n}.e or 5) (s.nope.deeper or 6) ];
    names = builtins.attrNames s;
    floats = [ (-0.5) 0.00001 1.0e-5 1.5e10 123456.7 1234567.8 (0.1 + 0.2) (-7 / 2) (7 / (-2)) ];
    json = [ (builtins.toJSON 0.1) (builtins.toJSON [ 1.0 ]) (builtins.fromJSON "1.0") (builtins.fromJSON "\"\\u00e9\\n\"") ];
    ind = [
      ''
	Tabbed stays
  x
''
      ''
    a ${tab} b

    c
  ''
      ''$ ''\n \x''
    ];
  };
  nested.path = 1;
  nested.other = nested.path + 1;
  top = "e.age";
  ref = builtins.attrNames (builtins.getAttr top (builtins.removeAttrs { "e.age" = { q = 1; }; } [ ]));
}
