# The text NixOS writes for a `systemd.services.<name>`, `systemd.targets.<name>` or
# `systemd.timers.<name>` definition: the golden units in tests/nix/golden/ and the
# units eval-test.py runs (render and run).
#
# What is nixpkgs' and what is ours: nixpkgs' lib (the NIXPKGS_LIB checkout) is used
# as is (makeBinPath, makeSearchPathOutput, attribute order, toJSON). The rendering
# itself is OUR TRANSCRIPTION of nixpkgs' nixos/lib/systemd-lib.nix (toOption,
# attrsToSection, the unitConfig module's [Unit] keys, serviceConfig's PATH,
# stage2ServiceConfig's default path, commonUnitText, serviceToUnit, targetToUnit,
# timerToUnit), because only nixpkgs' lib/ can be had here, not nixos/. Transcribed
# from nixpkgs master as stored at commit 013635633ffe11f70df1d639f563f21c42c1f778
# (systemd-lib.nix), and the .wants links generateUnits makes for wantedBy.
# Left out, because sprout's modules set none of them: script/preStart/...
# (makeJobScript), reloadIfChanged, reloadTriggers, notSocketActivated, aliases,
# requiredBy/upheldBy, the startLimit* options (sprout sets StartLimit* in unitConfig).
# Also left out: systemd.globalEnvironment, which a real NixOS fills from other
# modules (LOCALE_ARCHIVE from i18n, TZDIR from time): a real service unit has those
# two Environment lines more.
# X-Restart-Triggers names a file holding the triggers, as nixpkgs' writeText makes
# it; its store name is "X-Restart-Triggers-" and the unit's name, where nixpkgs'
# store names turn "@" into "-" (nixpkgs PR 255008 shows
# X-Restart-Triggers-systemd-journald- for systemd-journald@; a Nix store name cannot
# hold "@", so we sanitize the name as lib.strings.sanitizeDerivationName does).
{ lib, pkgs }:
let
  inherit (lib) attrNames concatLists concatMapStrings concatStrings concatStringsSep flatten isList
    makeBinPath makeSearchPathOutput mapAttrsToList optionalAttrs optionalString;

  toOption = x: if x == true then "true" else if x == false then "false" else toString x;

  attrsToSection = as: concatStrings (concatLists (mapAttrsToList
    (name: value: map (x: "${name}=${toOption x}\n") (if isList value then value else [ value ]))
    as));

  # systemd-lib.nix, unitConfig: the [Unit] keys made from the unit's options.
  unitKeys = name: def:
    let l = n: def.${n} or [ ]; in
    optionalAttrs (l "requires" != [ ]) { Requires = toString def.requires; }
    // optionalAttrs (l "wants" != [ ]) { Wants = toString def.wants; }
    // optionalAttrs (l "upholds" != [ ]) { Upholds = toString def.upholds; }
    // optionalAttrs (l "after" != [ ]) { After = toString def.after; }
    // optionalAttrs (l "before" != [ ]) { Before = toString def.before; }
    // optionalAttrs (l "bindsTo" != [ ]) { BindsTo = toString def.bindsTo; }
    // optionalAttrs (l "partOf" != [ ]) { PartOf = toString def.partOf; }
    // optionalAttrs (l "conflicts" != [ ]) { Conflicts = toString def.conflicts; }
    // optionalAttrs (l "requisite" != [ ]) { Requisite = toString def.requisite; }
    // optionalAttrs (l "restartTriggers" != [ ]) {
      X-Restart-Triggers = "${pkgs.writeText "X-Restart-Triggers-${lib.strings.sanitizeDerivationName name}"
        (toString (map (x: if builtins.isPath x then "${x}" else x) (flatten def.restartTriggers)))}";
    }
    // optionalAttrs ((def.description or "") != "") { Description = def.description; }
    // optionalAttrs (l "documentation" != [ ]) { Documentation = toString def.documentation; }
    // optionalAttrs (l "onFailure" != [ ]) { OnFailure = toString def.onFailure; }
    // optionalAttrs (l "onSuccess" != [ ]) { OnSuccess = toString def.onSuccess; };

  unitSection = name: def: "[Unit]\n${attrsToSection (unitKeys name def // (def.unitConfig or { }))}\n";

  # systemd-lib.nix, commonUnitText: [Unit], the type's own lines, [Install].
  commonUnitText = name: def: lines:
    unitSection name def + lines
    + optionalString ((def.wantedBy or [ ]) != [ ]) "\n[Install]\nWantedBy=${concatStringsSep " " def.wantedBy}\n";

  # systemd-lib.nix, stage2ServiceConfig: the default path, mkAfter the unit's own.
  defaultPath = [ pkgs.coreutils pkgs.findutils pkgs.gnugrep pkgs.gnused pkgs.systemd ];
in
{
  # Each takes the unit's name without its suffix (the attribute name, as in
  # systemd.services.<name>) and its definition; returns the unit file's text.
  serviceToUnit = name: def:
    let
      path = (def.path or [ ]) ++ defaultPath;
      env = (def.environment or { })
        // optionalAttrs (path != [ ]) { PATH = "${makeBinPath path}:${makeSearchPathOutput "bin" "sbin" path}"; };
    in
    commonUnitText name def (
      "[Service]\n"
      + concatMapStrings (n: optionalString (env.${n} != null) "Environment=${builtins.toJSON "${n}=${env.${n}}"}\n")
        (attrNames env)
      + optionalString (!(def.restartIfChanged or true)) "X-RestartIfChanged=false\n"
      + optionalString (!(def.stopIfChanged or true)) "X-StopIfChanged=false\n"
      + attrsToSection (def.serviceConfig or { }));

  # A target's file is its [Unit] section only; wantedBy becomes .wants links.
  targetToUnit = unitSection;

  timerToUnit = name: def: commonUnitText name def "[Timer]\n${attrsToSection (def.timerConfig or { })}\n";

  # The links NixOS makes beside the unit files for wantedBy (systemd-lib.nix,
  # generateUnits: `ln -sfn '../NAME' 'TARGET.wants'/` for each TARGET in wantedBy).
  # Takes { "NAME.SUFFIX" = definition; }; returns { "TARGET.wants/NAME.SUFFIX" = "../NAME.SUFFIX"; }.
  wantsLinks = units: builtins.listToAttrs (concatLists (mapAttrsToList
    (name: def: map (t: { name = "${t}.wants/${name}"; value = "../${name}"; }) (def.wantedBy or [ ]))
    units));
}
