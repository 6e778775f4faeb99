//! Stack resources and instances fixtures: what is kept, what never is, and wrong files.

use super::*;
use crate::import;

const RESOURCES: &[u8] = include_bytes!("../testdata/web.stack-resources.json");
const INSTANCES: &[u8] = include_bytes!("../testdata/web.instances.json");

fn fixture() -> (Stack, Instances) {
    let instances = parse_instances(INSTANCES).unwrap();
    (parse_stack(RESOURCES, Some(&instances)).unwrap(), instances)
}

#[test]
fn stack_resources_become_instances_groups_and_templates() {
    let (stack, instances) = fixture();
    assert_eq!(instances.by_id.len(), 1);
    assert_eq!(stack.name.as_deref(), Some("web"));
    assert_eq!(stack.summary.kind, StateKind::CloudFormation);
    assert_eq!(stack.summary.serial, None);
    // The secret; the deleted instance is gone, not ignored.
    assert_eq!(stack.summary.ignored_instances, 1);
    let addresses: Vec<&str> = stack
        .summary
        .resources
        .iter()
        .map(|r| r.address.as_str())
        .collect();
    assert_eq!(addresses, ["WebA", "WebB", "WebGroup", "WebTemplate"]);

    let request = import::state_request(stack.summary.clone(), "web", "web.json");
    import::validate_state(&request).unwrap();
    assert_eq!(request.kind, "cloudformation");
    let find = |a: &str| request.resources.iter().find(|r| r.address == a).unwrap();
    let a = find("WebA");
    assert_eq!(
        (
            a.role.as_str(),
            a.key.as_str(),
            a.image_id.as_str(),
            a.private_ip.as_str(),
            a.status.as_str(),
            a.name.as_str(),
            a.location.as_str(),
        ),
        (
            "instance",
            "i-0c1d2e3f4a5b60001",
            "ami-0aa11bb22cc33dd44",
            "10.0.1.21",
            "running",
            "web-a",
            "eu-west-1a"
        )
    );
    assert_eq!(a.r#type, "AWS::EC2::Instance");
    // Not in the instances file: kept without image, and counted.
    let b = find("WebB");
    assert_eq!(
        (b.key.as_str(), b.image_id.as_str()),
        ("i-0c1d2e3f4a5b60002", "")
    );
    assert_eq!(stack.undescribed, 1);
    assert_eq!(
        stack.summary.warnings,
        [
            "1 instance of the stack not in the instances file (`aws ec2 describe-instances`): \
          stored without image or addresses (WebB)"
        ]
    );
    let group = find("WebGroup");
    assert_eq!(
        (group.role.as_str(), group.key.as_str()),
        ("group", "web-WebGroup-1A2B3C4D5E6F")
    );
    let template = find("WebTemplate");
    assert_eq!(
        (template.role.as_str(), template.key.as_str()),
        ("template", "lt-0f1e2d3c4b5a69788")
    );

    let rendered = format!("{stack:?}\n{instances:?}\n{request:?}");
    assert!(!rendered.contains("SECRET"), "{rendered}");
}

#[test]
fn without_an_instances_file_every_instance_is_counted() {
    let stack = parse_stack(RESOURCES, None).unwrap();
    assert_eq!(stack.undescribed, 2);
    assert!(
        stack.summary.warnings[0]
            .starts_with("2 instances of the stack not described: no instances file"),
        "{:?}",
        stack.summary.warnings
    );
}

#[test]
fn list_stack_resources_output_is_read_too() {
    let list = br#"{"StackResourceSummaries": [{"LogicalResourceId": "Web",
        "PhysicalResourceId": "i-1", "ResourceType": "AWS::EC2::Instance",
        "LastUpdatedTimestamp": "2024-06-01T10:20:31Z", "ResourceStatus": "CREATE_COMPLETE"}],
        "NextToken": "SECRET-token"}"#;
    let stack = parse_stack(&list[..], Some(&Instances::default())).unwrap();
    assert_eq!(stack.name, None);
    assert_eq!(stack.summary.resources[0].kind.instance_id(), Some("i-1"));
    assert!(!format!("{stack:?}").contains("SECRET"));
}

#[test]
fn two_stacks_in_one_file_are_refused() {
    let two = br#"{"StackResources": [
        {"StackName": "a", "LogicalResourceId": "X", "ResourceType": "AWS::EC2::Instance"},
        {"StackName": "b", "LogicalResourceId": "X", "ResourceType": "AWS::EC2::Instance"}]}"#;
    let err = parse_stack(&two[..], None).unwrap_err().to_string();
    assert!(err.contains("two stacks, \"a\" and \"b\""), "{err}");
}

#[test]
fn odd_shapes_are_warnings_naming_the_attribute() {
    let odd = br#"{"StackResources": ["SECRET-entry",
        {"StackName": "s", "LogicalResourceId": "W", "ResourceType": "AWS::EC2::Instance",
         "PhysicalResourceId": {"SECRET": 1}}]}"#;
    let stack = parse_stack(&odd[..], None).unwrap();
    let warnings = stack.summary.warnings.join("\n");
    assert!(
        warnings.contains("StackResources[0] is a string"),
        "{warnings}"
    );
    assert!(
        warnings.contains("StackResources[1]: attribute `PhysicalResourceId` is an object"),
        "{warnings}"
    );
    assert!(!format!("{stack:?}").contains("SECRET"));
    let instances = br#"{"Reservations": [{"Instances": [
        {"InstanceId": "i-1", "ImageId": ["SECRET"], "State": "SECRET", "Tags": {"SECRET": "x"}}]}]}"#;
    let instances = parse_instances(&instances[..]).unwrap();
    assert_eq!(instances.by_id["i-1"], Ec2Instance::default());
    assert_eq!(instances.warnings.len(), 3, "{:?}", instances.warnings);
    assert!(!format!("{instances:?}").contains("SECRET"));
}

#[test]
fn wrong_files_say_what_they_look_like() {
    let err = |bytes: &[u8]| parse_stack(bytes, None).unwrap_err().to_string();
    let e = err(INSTANCES);
    assert!(
        e.starts_with("not `aws cloudformation describe-stack-resources` output")
            && e.contains("--instances"),
        "{e}"
    );
    let e = err(include_bytes!("../testdata/web-dev.pulumi.json"));
    assert!(e.contains("--pulumi-stack"), "{e}");
    let e = err(include_bytes!("../testdata/prod-web.tfstate"));
    assert!(e.contains("--terraform-state"), "{e}");
    let e = err(br#"{"Stacks": [{"StackName": "web"}]}"#);
    assert!(
        e.contains("describe-stacks") && e.contains("names no resources"),
        "{e}"
    );
    assert_eq!(
        err(b"{}"),
        "not `aws cloudformation describe-stack-resources` output: no top-level `StackResources`"
    );
    assert!(err(br#"{"StackResources": 3}"#).contains("an array of stack resources"));

    let e = parse_instances(RESOURCES).unwrap_err().to_string();
    assert!(
        e.starts_with("not `aws ec2 describe-instances` output") && e.contains("--cloudformation"),
        "{e}"
    );
    assert!(matches!(
        parse_instances_limited(INSTANCES, 10),
        Err(InstancesError::Input(InputError::TooLarge { limit: 10 }))
    ));
}
