let h = { one = "kh1"; two = "kh2"; }; in h // { all = builtins.attrValues h; }
