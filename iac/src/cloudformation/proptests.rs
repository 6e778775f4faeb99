//! Property test: any stack resources and instances keep the allow-list and nothing else.
//!
//! Every value not allow-listed holds the case's marker: unknown keys of resources and
//! instances (descriptions, status reasons, metadata, key names, network interfaces, block
//! devices, IAM profiles), unknown top-level keys, resources of types not read, allow-listed
//! keys of a shape not read. The marker must appear in neither the parsed stack and instances
//! nor the import request.

use proptest::collection::vec;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::import;

const TYPES: &[&str] = &[
    "AWS::EC2::Instance",
    "AWS::AutoScaling::AutoScalingGroup",
    "AWS::EC2::LaunchTemplate",
    "AWS::AutoScaling::LaunchConfiguration",
    "AWS::SecretsManager::Secret",
    "AWS::RDS::DBInstance",
    "AWS::CloudFormation::Stack",
];

const STATUSES: &[&str] = &[
    "CREATE_COMPLETE",
    "UPDATE_COMPLETE",
    "CREATE_FAILED",
    "DELETE_COMPLETE",
];

/// One allow-listed string: plain, odd (holding the marker) or absent.
fn leaf(choice: u8, plain: String, marker: &str) -> Option<Value> {
    match choice % 6 {
        0 => None,
        1 => Some(json!({"x": marker})),
        2 => Some(json!([marker])),
        _ => Some(json!(plain)),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn any_stack_keeps_the_allow_list_and_nothing_else(
        marker in 0u64..u64::MAX,
        resources in vec((0usize..TYPES.len(), 0usize..STATUSES.len(), any::<bool>(), vec(any::<u8>(), 12)), 0..12),
    ) {
        let marker = format!("SECRET-{marker:x}");
        let mut entries = Vec::new();
        let mut instances = Vec::new();
        let mut expected = Vec::new();
        for (n, (t, status, described, choices)) in resources.iter().enumerate() {
            let ty = TYPES[*t];
            let logical = format!("R{n}");
            let physical = if ty.starts_with("AWS::EC2::Instance") {
                format!("i-{n:017x}")
            } else if ty.starts_with("AWS::SecretsManager") || ty.starts_with("AWS::RDS") {
                // What a type not read names is never kept.
                marker.clone()
            } else {
                format!("p-{n}")
            };
            entries.push(json!({
                "StackName": "web", "StackId": format!("arn:aws:cloudformation:::stack/web/{marker}"),
                "LogicalResourceId": logical, "PhysicalResourceId": physical,
                "ResourceType": ty, "ResourceStatus": STATUSES[*status],
                "Timestamp": "2024-06-01T10:20:31Z", "Description": marker,
                "ResourceStatusReason": marker, "Metadata": format!("{{\"k\": \"{marker}\"}}"),
                "DriftInformation": {"StackResourceDriftStatus": marker},
                "ModuleInfo": {"TypeHierarchy": marker},
            }));
            if t < &4 && STATUSES[*status] != "DELETE_COMPLETE" {
                expected.push(logical);
            }
            if ty == "AWS::EC2::Instance" && *described {
                let c = |i: usize| choices[i];
                let mut instance = json!({
                    "InstanceId": physical, "KeyName": marker, "InstanceType": "t3.micro",
                    "BlockDeviceMappings": [{"Ebs": {"VolumeId": marker}}],
                    "NetworkInterfaces": [{"Description": marker, "PrivateIpAddress": marker}],
                    "IamInstanceProfile": {"Arn": marker}, "SecurityGroups": [{"GroupName": marker}],
                    "UserData": marker, "Placement": {"AvailabilityZone": "eu-west-1a", "Tenancy": marker},
                    "State": {"Code": 16, "Name": "running", "Reason": marker},
                    "Tags": [{"Key": "Name", "Value": format!("web-{n}")}, {"Key": {"x": marker}, "Value": "v"}, marker],
                });
                for (i, key) in ["ImageId", "PrivateIpAddress", "PublicIpAddress", "PrivateDnsName"].iter().enumerate() {
                    if let Some(v) = leaf(c(i), format!("{key}-{n}"), &marker) {
                        instance[*key] = v;
                    }
                }
                if c(5) % 4 == 0 {
                    instance["State"] = json!(marker);
                }
                instances.push(json!({"ReservationId": marker, "OwnerId": marker, "Groups": [{"GroupName": marker}],
                                      "Instances": [instance]}));
            }
        }
        let resources_doc = json!({"StackResources": entries, "ResponseMetadata": {"RequestId": marker}});
        let instances_doc = json!({"Reservations": instances, "NextToken": marker});
        let (resources_text, instances_text) = (resources_doc.to_string(), instances_doc.to_string());

        let instances = parse_instances(instances_text.as_bytes())
            .map_err(|e| TestCaseError::fail(format!("{e}\n{instances_text}")))?;
        let stack = parse_stack(resources_text.as_bytes(), Some(&instances))
            .map_err(|e| TestCaseError::fail(format!("{e}\n{resources_text}")))?;
        let request = import::state_request(stack.summary.clone(), "web", "web.json");
        import::validate_state(&request).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let rendered = format!("{stack:?}\n{instances:?}\n{request:?}");
        prop_assert!(!rendered.contains(&marker), "{marker} survived:\n{rendered}\n{resources_text}\n{instances_text}");
        let mut sent: Vec<String> = request.resources.iter().map(|r| r.address.clone()).collect();
        sent.sort();
        expected.sort();
        prop_assert_eq!(sent, expected);
    }
}
